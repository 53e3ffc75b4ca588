import Foundation
import KilnCore

/// Who kiln is at AWS: long-term keys, or temporary ones with their session token.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    /// Set for temporary credentials (STS, SSO exports); sent as `X-Amz-Security-Token`.
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        (self.accessKeyID, self.secretAccessKey, self.sessionToken) = (accessKeyID, secretAccessKey, sessionToken)
    }
}

/// Where and as whom kiln talks to EC2, found the way the AWS CLI finds it, so a machine set up
/// for `aws` works for kiln without more configuration.
public struct AWSConfiguration: Sendable {
    public var region: String
    public var endpoint: URL
    public var credentials: AWSCredentials

    public init(region: String, endpoint: URL, credentials: AWSCredentials) {
        (self.region, self.endpoint, self.credentials) = (region, endpoint, credentials)
    }

    /// Resolves region, endpoint and credentials.
    ///
    /// - region: `region` (the template's setting) wins, else `AWS_REGION`, `AWS_DEFAULT_REGION`,
    ///   then the profile's `region` in the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`).
    /// - endpoint: `AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`, else `https://ec2.<region>.amazonaws.com`.
    /// - credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, else
    ///   the profile (`AWS_PROFILE`, else `default`) in the shared credentials file
    ///   (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), then in the config file.
    ///
    /// - Throws: ``KilnError/Code/invalidInput`` naming every variable and file looked at, when
    ///   credentials or region are missing or a setting is malformed; all problems at once.
    public static func resolve(
        region: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> AWSConfiguration {
        func variable(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return value
        }
        let home = variable("HOME") ?? NSHomeDirectory()
        let profile = variable("AWS_PROFILE") ?? "default"
        let profileNote =
            variable("AWS_PROFILE") == nil ? "profile \"default\" (AWS_PROFILE is not set)" : "profile \"\(profile)\" (AWS_PROFILE)"
        let credentialsFile = SharedFile(
            path: variable("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials",
            variable: "AWS_SHARED_CREDENTIALS_FILE", isConfig: false, environment: environment)
        let configFile = SharedFile(
            path: variable("AWS_CONFIG_FILE") ?? home + "/.aws/config", variable: "AWS_CONFIG_FILE", isConfig: true,
            environment: environment)
        var problems: [String] = []

        var credentials: AWSCredentials?
        switch (variable("AWS_ACCESS_KEY_ID"), variable("AWS_SECRET_ACCESS_KEY")) {
        case (let id?, let secret?):
            credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: variable("AWS_SESSION_TOKEN"))
        case (_?, nil): problems.append("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, _?): problems.append("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (nil, nil):
            var notes: [String] = []
            files: for file in [credentialsFile, configFile] {
                switch file.credentials(profile: profile) {
                case .found(let found):
                    credentials = found
                    break files
                case .missing(let why):
                    notes.append("\(file.described) \(why)")
                case .broken(let why):
                    problems.append("\(file.described): \(why)")
                    break files
                }
            }
            if credentials == nil && problems.isEmpty {
                problems.append(
                    "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and for \(profileNote) "
                        + notes.joined(separator: ", and "))
            }
        }

        var resolvedRegion: String?
        if let given = region?.trimmingCharacters(in: .whitespaces), !given.isEmpty {
            resolvedRegion = given
        } else if let value = variable("AWS_REGION") ?? variable("AWS_DEFAULT_REGION") {
            resolvedRegion = value
        } else {
            switch configFile.region(profile: profile) {
            case .found(let value): resolvedRegion = value
            case .missing(let why):
                problems.append(
                    "no AWS region: the template sets none, AWS_REGION and AWS_DEFAULT_REGION are not set, and for "
                        + "\(profileNote) \(configFile.described) \(why)")
            case .broken(let why): problems.append("\(configFile.described): \(why)")
            }
        }
        if let name = resolvedRegion, !name.utf8.allSatisfy({ isRegionByte($0) }) {
            problems.append("AWS region \"\(name)\" is not a region name (lowercase letters, digits and '-', as us-east-1)")
            resolvedRegion = nil
        }

        var endpoint: URL?
        if let name = ["AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL"].first(where: { variable($0) != nil }) {
            let text = variable(name)!
            if let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
                url.host?.isEmpty == false
            {
                endpoint = url
            } else {
                problems.append("\(name) \"\(text)\" is not an http:// or https:// URL")
            }
        } else if let name = resolvedRegion {
            endpoint = URL(string: "https://ec2.\(name).amazonaws.com")
        }

        guard problems.isEmpty, let credentials, let resolvedRegion, let endpoint else {
            throw KilnError(.invalidInput, problems.joined(separator: "; "))
        }
        return AWSConfiguration(region: resolvedRegion, endpoint: endpoint, credentials: credentials)
    }

    private static func isRegionByte(_ byte: UInt8) -> Bool {
        (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == UInt8(ascii: "-")
    }
}

/// An AWS shared file (`credentials` or `config`): INI sections of `key = value` lines.
private struct SharedFile {
    enum Lookup<Value> {
        case found(Value)
        /// Why nothing was found, to finish "<file> ...": "does not exist", "has no [default] section".
        case missing(String)
        case broken(String)
    }

    let path: String
    let variable: String
    /// The config file names sections `[profile NAME]` (but `[default]`); the credentials file `[NAME]`.
    let isConfig: Bool
    let sections: [String: [String: String]]?
    let readError: String?
    /// Named by its variable rather than found at the default path.
    let explicit: Bool

    init(path: String, variable: String, isConfig: Bool, environment: [String: String]) {
        (self.path, self.variable, self.isConfig) = (path, variable, isConfig)
        if !FileManager.default.fileExists(atPath: path) {
            (sections, readError) = (nil, nil)
        } else if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            (sections, readError) = (Self.parse(text), nil)
        } else {
            (sections, readError) = (nil, "cannot be read as UTF-8 text")
        }
        explicit = environment[variable].map { !$0.isEmpty } ?? false
    }

    /// `/root/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE is not set)`.
    var described: String { path + (explicit ? " (\(variable))" : " (\(variable) is not set)") }

    func credentials(profile: String) -> Lookup<AWSCredentials> {
        let keys: [String: String]
        switch section(profile) {
        case .found(let found): keys = found
        case .missing(let why): return .missing(why)
        case .broken(let why): return .broken(why)
        }
        let id = keys["aws_access_key_id"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = keys["aws_secret_access_key"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case (let id?, let secret?):
            let token = keys["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 }
            return .found(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token))
        case (nil, nil): return .missing("has no aws_access_key_id or aws_secret_access_key in \(header(profile))")
        case (_?, nil): return .broken("\(header(profile)) has aws_access_key_id but no aws_secret_access_key")
        case (nil, _?): return .broken("\(header(profile)) has aws_secret_access_key but no aws_access_key_id")
        }
    }

    func region(profile: String) -> Lookup<String> {
        switch section(profile) {
        case .found(let keys):
            guard let region = keys["region"], !region.isEmpty else { return .missing("has no region in \(header(profile))") }
            return .found(region)
        case .missing(let why): return .missing(why)
        case .broken(let why): return .broken(why)
        }
    }

    private func header(_ profile: String) -> String {
        isConfig && profile != "default" ? "[profile \(profile)]" : "[\(profile)]"
    }

    private func section(_ profile: String) -> Lookup<[String: String]> {
        if let readError { return .broken(readError) }
        guard let sections else { return .missing("does not exist") }
        let names = isConfig ? (profile == "default" ? ["default", "profile default"] : ["profile " + profile]) : [profile]
        guard let found = names.lazy.compactMap({ sections[$0] }).first else { return .missing("has no \(header(profile)) section") }
        return .found(found)
    }

    /// Sections by name (inner spaces made one), keys lowercased. Indented lines belong to a
    /// nested setting (`s3 =` and its sub-keys), which kiln has no use for.
    static func parse(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().split(whereSeparator: \.isWhitespace).joined(separator: " ")
                current = name
                sections[name, default: [:]] = sections[name] ?? [:]
                continue
            }
            guard let section = current, let first = raw.first, !first.isWhitespace,
                let equals = line.firstIndex(of: "=")
            else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            sections[section, default: [:]][key] = value
        }
        return sections
    }
}
