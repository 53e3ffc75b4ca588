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
    public var credentialSource: AWSCredentialSource
    /// Where STS is asked for temporary credentials (web identity, assumed roles).
    public var stsEndpoint: URL

    public init(region: String, endpoint: URL, credentialSource: AWSCredentialSource, stsEndpoint: URL? = nil) {
        (self.region, self.endpoint, self.credentialSource) = (region, endpoint, credentialSource)
        self.stsEndpoint = stsEndpoint ?? Self.serviceEndpoint("sts", region: region)
    }

    public init(region: String, endpoint: URL, credentials: AWSCredentials) {
        self.init(region: region, endpoint: endpoint, credentialSource: .keys(credentials))
    }

    /// The keys, when they were given outright (not fetched when a request needs them).
    public var credentials: AWSCredentials? {
        if case .keys(let keys) = credentialSource { keys } else { nil }
    }

    /// `https://SERVICE.REGION.amazonaws.com`, or `.amazonaws.com.cn` in the China partition.
    public static func serviceEndpoint(_ service: String, region: String) -> URL {
        let suffix = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
        return URL(string: "https://\(service).\(region).\(suffix)")!
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

        var source: AWSCredentialSource?
        var notes: [String] = []
        let session = variable("AWS_ROLE_SESSION_NAME") ?? "kiln-\(getpid())"
        switch (variable("AWS_ACCESS_KEY_ID"), variable("AWS_SECRET_ACCESS_KEY")) {
        case (let id?, let secret?):
            source = .keys(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: variable("AWS_SESSION_TOKEN")))
        case (_?, nil): problems.append("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, _?): problems.append("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (nil, nil):
            // The AWS CLI's order after the environment: a profile's role, web identity, the
            // profile's keys or credential_process, the container endpoint, the instance's role.
            let settings = configFile.settings(profile: profile)
            if let role = settings?["role_arn"] {
                do {
                    source = try roleSource(
                        role, settings: settings ?? [:], profile: profile, session: session, files: [credentialsFile, configFile],
                        environment: variable)
                } catch let error as KilnError {
                    problems.append(error.message)
                }
            } else if let tokenFile = variable("AWS_WEB_IDENTITY_TOKEN_FILE") {
                if let role = variable("AWS_ROLE_ARN") {
                    source = .webIdentity(roleARN: role, tokenFile: tokenFile, sessionName: session)
                } else {
                    problems.append("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
                }
            } else {
                files: for file in [credentialsFile, configFile] {
                    switch file.credentials(profile: profile) {
                    case .found(let found):
                        source = .keys(found)
                        break files
                    case .missing(let why):
                        if let command = file.settings(profile: profile)?["credential_process"], !command.isEmpty {
                            source = .process(command: command)
                            break files
                        }
                        notes.append("\(file.described) \(why)")
                    case .broken(let why):
                        problems.append("\(file.described): \(why)")
                        break files
                    }
                }
                if source == nil && problems.isEmpty { source = containerOrInstance(variable) }
            }
            if source == nil && problems.isEmpty {
                problems.append(
                    "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and for \(profileNote) "
                        + notes.joined(separator: ", and ")
                        + ", no container credentials endpoint is set, and AWS_EC2_METADATA_DISABLED keeps kiln from asking the instance")
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
            endpoint = serviceEndpoint("ec2", region: name)
        }
        var sts: URL?
        if let text = variable("AWS_ENDPOINT_URL_STS") ?? variable("AWS_ENDPOINT_URL") {
            sts = URL(string: text)
        }

        guard problems.isEmpty, let source, let resolvedRegion, let endpoint else {
            throw KilnError(.invalidInput, problems.joined(separator: "; "))
        }
        var configuration = AWSConfiguration(region: resolvedRegion, endpoint: endpoint, credentialSource: source, stsEndpoint: sts)
        // Said when the last resort (the instance's metadata service) fails too.
        configuration.lookedAt = notes.isEmpty ? nil : "for \(profileNote) " + notes.joined(separator: ", and ")
        return configuration
    }

    /// What was looked at before the instance metadata service, for the error when it fails too.
    public var lookedAt: String?

    /// A profile with `role_arn`: its `web_identity_token_file`, else AssumeRole with the keys of
    /// its `source_profile` (which may itself assume a role) or its `credential_source`.
    private static func roleSource(
        _ role: String, settings: [String: String], profile: String, session: String, files: [SharedFile], depth: Int = 0,
        environment variable: (String) -> String?
    ) throws -> AWSCredentialSource {
        let sessionName = settings["role_session_name"] ?? session
        if let tokenFile = settings["web_identity_token_file"] {
            return .webIdentity(roleARN: role, tokenFile: tokenFile, sessionName: sessionName)
        }
        let inner: AWSCredentialSource
        if let sourceProfile = settings["source_profile"] {
            guard depth < 8 else {
                throw KilnError(.invalidInput, "profile \(profile): source_profile chains more than 8 roles deep (a loop?)")
            }
            let sourceSettings = files[1].settings(profile: sourceProfile) ?? [:]
            if sourceProfile != profile, let next = sourceSettings["role_arn"] {
                inner = try roleSource(
                    next, settings: sourceSettings, profile: sourceProfile, session: session, files: files, depth: depth + 1,
                    environment: variable)
            } else if let keys = files.lazy.compactMap({ file -> AWSCredentials? in
                if case .found(let keys) = file.credentials(profile: sourceProfile) { return keys } else { return nil }
            }).first {
                inner = .keys(keys)
            } else if let command = sourceSettings["credential_process"] {
                inner = .process(command: command)
            } else {
                throw KilnError(.invalidInput, "profile \(profile): its source_profile \(sourceProfile) has no keys in either file")
            }
        } else if let named = settings["credential_source"] {
            switch named {
            case "Environment":
                guard let id = variable("AWS_ACCESS_KEY_ID"), let secret = variable("AWS_SECRET_ACCESS_KEY") else {
                    throw KilnError(
                        .invalidInput,
                        "profile \(profile): credential_source Environment, but AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
                }
                inner = .keys(AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: variable("AWS_SESSION_TOKEN")))
            case "Ec2InstanceMetadata": inner = .instanceMetadata(metadataEndpoint(variable))
            case "EcsContainer":
                guard let container = containerSource(variable) else {
                    throw KilnError(
                        .invalidInput, "profile \(profile): credential_source EcsContainer, but no container credentials endpoint is set")
                }
                inner = container
            default:
                throw KilnError(
                    .invalidInput, "profile \(profile): credential_source \(named) is not Environment, Ec2InstanceMetadata or EcsContainer")
            }
        } else {
            throw KilnError(
                .invalidInput, "profile \(profile) has role_arn but no source_profile, credential_source or web_identity_token_file")
        }
        return .assumeRole(roleARN: role, sessionName: sessionName, externalID: settings["external_id"], source: inner)
    }

    /// ECS and EKS Pod Identity set one of two variables; the relative one is on ECS's link-local host.
    private static func containerSource(_ variable: (String) -> String?) -> AWSCredentialSource? {
        let token =
            variable("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? variable("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        if let relative = variable("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), let url = URL(string: "http://169.254.170.2" + relative) {
            return .container(url, authorization: token)
        }
        if let full = variable("AWS_CONTAINER_CREDENTIALS_FULL_URI"), let url = URL(string: full) {
            return .container(url, authorization: token)
        }
        return nil
    }

    private static func metadataEndpoint(_ variable: (String) -> String?) -> URL {
        variable("AWS_EC2_METADATA_SERVICE_ENDPOINT").flatMap(URL.init(string:)) ?? URL(string: "http://169.254.169.254")!
    }

    /// The chain's last two links; nil when the metadata service is turned off.
    private static func containerOrInstance(_ variable: (String) -> String?) -> AWSCredentialSource? {
        if let container = containerSource(variable) { return container }
        guard variable("AWS_EC2_METADATA_DISABLED")?.lowercased() != "true" else { return nil }
        return .instanceMetadata(metadataEndpoint(variable))
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

    /// Every key of the profile's section; nil when the file or section is missing or unreadable.
    func settings(profile: String) -> [String: String]? {
        if case .found(let keys) = section(profile) { keys } else { nil }
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
