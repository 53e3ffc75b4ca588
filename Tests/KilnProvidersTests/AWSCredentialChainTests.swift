import Foundation
import KilnCore
import KilnTestSupport
import Testing

@testable import KilnProviders

/// The AWS CLI's credential chain beyond keys: web identity and assumed roles against moto's STS,
/// IMDSv2's token dance against a loopback metadata service, credential_process with a script,
/// and endpoints that follow the partition.
@Suite("AWS credential chain (STS on moto, IMDSv2 on loopback, credential_process)", .motoServer)
struct AWSCredentialChainTests {
    let home = NSTemporaryDirectory() + "kiln-aws-chain-" + UUID().uuidString

    init() throws { try FileManager.default.createDirectory(atPath: home + "/.aws", withIntermediateDirectories: true) }

    func write(_ name: String, _ text: String) throws { try text.write(toFile: home + "/" + name, atomically: true, encoding: .utf8) }

    /// Only what the test gives: the machine's own AWS settings and metadata service never leak in.
    func environment(_ extra: [String: String]) -> [String: String] {
        ["HOME": home, "AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"].merging(extra) { $1 }
    }

    func credentials(_ extra: [String: String]) async throws -> (AWSConfiguration, AWSCredentials) {
        let configuration = try AWSConfiguration.resolve(region: nil, environment: environment(extra))
        let provider = AWSCredentialProvider(
            source: configuration.credentialSource, region: configuration.region, stsEndpoint: configuration.stsEndpoint)
        return (configuration, try await provider.current())
    }

    @Test("web identity: AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN become temporary keys from STS AssumeRoleWithWebIdentity")
    func webIdentity() async throws {
        let moto = try MotoServer.current()
        defer { try? FileManager.default.removeItem(atPath: home) }
        try write("token", "eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl\n")
        let (configuration, keys) = try await credentials([
            "AWS_WEB_IDENTITY_TOKEN_FILE": home + "/token", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/kiln-ci",
            "AWS_ROLE_SESSION_NAME": "pipeline-42", "AWS_ENDPOINT_URL": moto.endpoint.absoluteString,
        ])
        #expect(
            configuration.credentialSource
                == .webIdentity(roleARN: "arn:aws:iam::123456789012:role/kiln-ci", tokenFile: home + "/token", sessionName: "pipeline-42"))
        #expect(keys.accessKeyID.hasPrefix("ASIA") && keys.sessionToken?.isEmpty == false, "\(keys.accessKeyID)")
        // The keys sign EC2 calls: moto answers one.
        let client = EC2Client(configuration: configuration)
        _ = try await client.call("DescribeRegions", [])

        let missing = try await #require(throws: KilnError.self) {
            try await credentials([
                "AWS_WEB_IDENTITY_TOKEN_FILE": home + "/absent", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
                "AWS_ENDPOINT_URL": moto.endpoint.absoluteString,
            ])
        }
        #expect(missing.message.contains("cannot read the token file \(home)/absent"))
        let noRole = try #require(throws: KilnError.self) {
            try AWSConfiguration.resolve(region: nil, environment: environment(["AWS_WEB_IDENTITY_TOKEN_FILE": home + "/token"]))
        }
        #expect(noRole.message == "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
    }

    @Test("a profile with role_arn and source_profile assumes the role with the source's keys (STS AssumeRole, signed)")
    func assumeRoleProfile() async throws {
        let moto = try MotoServer.current()
        defer { try? FileManager.default.removeItem(atPath: home) }
        try write(".aws/credentials", "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base-secret\n")
        try write(
            ".aws/config",
            "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/deployer\nsource_profile = base\nexternal_id = x-1\nregion = eu-central-1\n"
        )
        let (configuration, keys) = try await credentials(["AWS_PROFILE": "deploy", "AWS_ENDPOINT_URL": moto.endpoint.absoluteString])
        guard case .assumeRole(let role, _, let external, let source) = configuration.credentialSource else {
            Issue.record("not an assumed role: \(configuration.credentialSource)")
            return
        }
        #expect(role == "arn:aws:iam::123456789012:role/deployer" && external == "x-1")
        #expect(source == .keys(AWSCredentials(accessKeyID: "AKIDBASE", secretAccessKey: "base-secret")))
        #expect(keys.accessKeyID != "AKIDBASE" && keys.sessionToken != nil)

        try write(".aws/config", "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/deployer\n")
        let orphan = try #require(throws: KilnError.self) {
            try AWSConfiguration.resolve(region: nil, environment: environment(["AWS_PROFILE": "deploy"]))
        }
        #expect(orphan.message.contains("profile deploy has role_arn but no source_profile, credential_source or web_identity_token_file"))
    }

    @Test("credential_process runs the profile's command and reads its JSON; a failing command is an error with its output")
    func credentialProcess() async throws {
        defer { try? FileManager.default.removeItem(atPath: home) }
        try write(
            "helper.sh",
            #"printf '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "proc-secret", "SessionToken": "t-%s", "Expiration": "2099-01-01T00:00:00Z"}' "$1""#
        )
        try write(".aws/config", "[default]\ncredential_process = sh \(home)/helper.sh from-the-helper\n")
        let (configuration, keys) = try await credentials([:])
        #expect(configuration.credentialSource == .process(command: "sh \(home)/helper.sh from-the-helper"))
        #expect(keys == AWSCredentials(accessKeyID: "AKIDPROC", secretAccessKey: "proc-secret", sessionToken: "t-from-the-helper"))

        try write("helper.sh", "echo 'vault is sealed' >&2; exit 3")
        let failed = try await #require(throws: KilnError.self) { try await credentials([:]) }
        #expect(failed.message.contains("credential_process exited with status 3: vault is sealed"), "\(failed.message)")
    }

    @Test("IMDSv2: a session token first, then the role's keys with it; no metadata service is an error naming what was looked at")
    func instanceMetadata() async throws {
        defer { try? FileManager.default.removeItem(atPath: home) }
        let base = NSTemporaryDirectory() + "kiln-imds-" + UUID().uuidString
        let imds = try FixtureScript(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/imds_server.py",
            arguments: [base + ".port", "kiln-runner", "ASIAIMDS", "imds-secret", "imds-token"], portFile: base + ".port",
            logPath: base + ".log")
        defer {
            imds.stop()
            try? FileManager.default.removeItem(atPath: base + ".log")
        }
        let endpoint = "http://127.0.0.1:\(imds.port)"
        let (configuration, keys) = try await credentials([
            "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
        ])
        #expect(configuration.credentialSource == .instanceMetadata(URL(string: endpoint)!))
        #expect(keys == AWSCredentials(accessKeyID: "ASIAIMDS", secretAccessKey: "imds-secret", sessionToken: "imds-token"))
        let requests = imds.log.split(separator: "\n")
        #expect(
            requests == [
                "PUT /latest/api/token 200", "GET /latest/meta-data/iam/security-credentials/ 200",
                "GET /latest/meta-data/iam/security-credentials/kiln-runner 200",
            ], "\(imds.log)")

        // Nothing answers: the EC2 call fails before it is sent, saying everything looked at.
        let closed = "http://127.0.0.1:\(try LocalRegistry.freePort())"
        let client = EC2Client(
            configuration: try AWSConfiguration.resolve(
                region: nil, environment: environment(["AWS_EC2_METADATA_DISABLED": "", "AWS_EC2_METADATA_SERVICE_ENDPOINT": closed])))
        let error = try await #require(throws: KilnError.self) { _ = try await client.call("DescribeRegions", []) }
        #expect(error.message.hasPrefix("no AWS credentials: none in the environment or the shared files"), "\(error.message)")
        #expect(error.message.contains("\(home)/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE is not set) does not exist"))
        #expect(error.message.contains("the instance metadata service (token)"), "\(error.message)")
    }

    @Test("endpoints follow the partition: China regions are amazonaws.com.cn, for EC2 and STS")
    func partitions() throws {
        defer { try? FileManager.default.removeItem(atPath: home) }
        let keys = ["AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B"]
        let china = try AWSConfiguration.resolve(region: "cn-north-1", environment: environment(keys))
        #expect(china.endpoint.absoluteString == "https://ec2.cn-north-1.amazonaws.com.cn")
        #expect(china.stsEndpoint.absoluteString == "https://sts.cn-north-1.amazonaws.com.cn")
        let commercial = try AWSConfiguration.resolve(region: "us-gov-west-1", environment: environment(keys))
        #expect(commercial.endpoint.absoluteString == "https://ec2.us-gov-west-1.amazonaws.com")
    }
}
