import Foundation
import KilnCore
import KilnRegistry

/// Where a store's blobs live besides the local store (docs/remote.md): one repository of an
/// OCI registry, `oci://HOST[:PORT]/REPOSITORY`.
public struct RemoteLocation: Sendable, Equatable, CustomStringConvertible {
    /// Host and repository; no tag (kiln names each manifest itself).
    public var reference: RegistryReference
    public var credentials: RegistryCredentials?
    /// What chose it, for messages: `--remote`, `KILN_REMOTE` or `CI_REGISTRY_IMAGE`.
    public var origin: String

    public var description: String { "oci://\(reference.host)/\(reference.repository)" }

    /// The repository kiln uses under a GitLab project's registry: a repository of its own, so
    /// kiln's tags never mix with the project's container images.
    public static let gitLabRepositorySuffix = "kiln"

    /// Parses `oci://HOST[:PORT]/REPOSITORY` (`oci+http://` for plain HTTP to a registry that is
    /// not on loopback).
    public init(parsing text: String, credentials: RegistryCredentials? = nil, origin: String) throws {
        let insecure: Bool
        let rest: Substring
        if text.hasPrefix("oci://") {
            (insecure, rest) = (false, text.dropFirst("oci://".count))
        } else if text.hasPrefix("oci+http://") {
            (insecure, rest) = (true, text.dropFirst("oci+http://".count))
        } else {
            throw KilnError(
                .invalidInput,
                "\(origin): '\(text)' is not a remote: write oci://HOST[:PORT]/REPOSITORY (oci+http:// for plain HTTP), or none")
        }
        // Credentials never go in the URL (it is printed, logged and kept in shell history);
        // the message does not repeat it.
        if let at = rest.firstIndex(of: "@"), !rest[..<at].contains("/") {
            throw KilnError(
                .invalidInput,
                "\(origin): the remote has a user name or password in it: give them in KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD")
        }
        let trimmed = rest.hasSuffix("/") ? rest.dropLast() : rest
        var reference: RegistryReference
        do { reference = try RegistryReference(parsing: String(trimmed), insecure: insecure) } catch let error as KilnError {
            throw KilnError(.invalidInput, "\(origin): \(error.message)")
        }
        guard reference.digest == nil, reference.tag == "latest", !trimmed.hasSuffix(":latest") else {
            throw KilnError(
                .invalidInput, "\(origin): '\(text)' names a tag or digest: a remote is a repository (kiln tags what it pushes)")
        }
        reference.tag = nil
        self.reference = reference
        self.credentials = credentials
        self.origin = origin
    }

    /// The remote a command uses: `--remote`, else `KILN_REMOTE`, else, inside a GitLab job,
    /// the project's registry (`$CI_REGISTRY_IMAGE/kiln`, with `$CI_REGISTRY_USER` and
    /// `$CI_REGISTRY_PASSWORD`, which win there). `none` turns it off. Credentials are
    /// otherwise `KILN_REGISTRY_USER` and `KILN_REGISTRY_PASSWORD`.
    public static func resolve(flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> RemoteLocation?
    {
        let credentials = try RegistryCredentials.fromEnvironment(environment)
        if let flag { return flag == "none" ? nil : try RemoteLocation(parsing: flag, credentials: credentials, origin: "--remote") }
        if let variable = environment["KILN_REMOTE"], !variable.isEmpty {
            return variable == "none" ? nil : try RemoteLocation(parsing: variable, credentials: credentials, origin: "KILN_REMOTE")
        }
        if environment["GITLAB_CI"] == "true", let image = environment["CI_REGISTRY_IMAGE"], !image.isEmpty {
            // The job's own credentials for the project's registry: KILN_REGISTRY_* may be meant
            // for another registry (an export's push) and must not go to this one.
            var ciCredentials = credentials
            if let user = environment["CI_REGISTRY_USER"], let password = environment["CI_REGISTRY_PASSWORD"],
                !user.isEmpty, !password.isEmpty
            {
                ciCredentials = RegistryCredentials(username: user, password: password)
            }
            return try RemoteLocation(
                parsing: "oci://" + image + "/" + gitLabRepositorySuffix, credentials: ciCredentials, origin: "CI_REGISTRY_IMAGE")
        }
        return nil
    }

    /// A client for the repository, kiln's one registry client (export --push uses it too).
    /// - Parameter chunkSize: bytes per upload PATCH and per ranged download request.
    public func client(
        chunkSize: Int = 16 << 20, retryDelays: [Duration] = [.milliseconds(500), .seconds(2), .seconds(5)]
    ) -> RegistryClient {
        RegistryClient(
            reference: reference, username: credentials?.username, password: credentials?.password, chunkSize: chunkSize,
            retryDelays: retryDelays)
    }
}
