import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnProviders

/// A home directory of its own per test, so the machine's real `~/.aws` never leaks in.
private struct AWSHome {
    let path = NSTemporaryDirectory() + "kiln-aws-" + UUID().uuidString

    init(credentials: String? = nil, config: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: path + "/.aws", withIntermediateDirectories: true)
        if let credentials { try credentials.write(toFile: path + "/.aws/credentials", atomically: true, encoding: .utf8) }
        if let config { try config.write(toFile: path + "/.aws/config", atomically: true, encoding: .utf8) }
    }

    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        extra.merging(["HOME": path]) { given, _ in given }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

private func resolutionError(region: String? = nil, _ environment: [String: String]) -> String {
    do {
        let configuration = try AWSConfiguration.resolve(region: region, environment: environment)
        return "resolved unexpectedly: \(configuration.region) \(configuration.endpoint)"
    } catch let error as KilnError {
        #expect(error.code == .invalidInput)
        return error.message
    } catch {
        return "unexpected error: \(error)"
    }
}

@Suite("AWS configuration resolution (environment, shared credentials and config files)")
struct AWSConfigurationTests {
    @Test("environment keys and session token, AWS_REGION, and the regional EC2 endpoint")
    func environmentOnly() throws {
        let home = try AWSHome()
        defer { home.remove() }
        let configuration = try AWSConfiguration.resolve(
            region: nil,
            environment: home.environment([
                "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_SESSION_TOKEN": "token-env",
                "AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-2",
            ]))
        #expect(
            configuration.credentials
                == AWSCredentials(accessKeyID: "AKIDENV", secretAccessKey: "secret-env", sessionToken: "token-env"))
        #expect(configuration.region == "eu-central-1")
        #expect(configuration.endpoint.absoluteString == "https://ec2.eu-central-1.amazonaws.com")
    }

    @Test("the template's region wins over the environment; AWS_ENDPOINT_URL_EC2 wins over AWS_ENDPOINT_URL")
    func explicitRegionAndEndpoints() throws {
        let home = try AWSHome()
        defer { home.remove() }
        var environment = home.environment([
            "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_REGION": "eu-central-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        ])
        var configuration = try AWSConfiguration.resolve(region: "ap-south-1", environment: environment)
        #expect(configuration.region == "ap-south-1")
        #expect(configuration.endpoint.absoluteString == "http://127.0.0.1:4566")
        #expect(configuration.credentials?.sessionToken == nil)
        environment["AWS_ENDPOINT_URL_EC2"] = "http://127.0.0.1:5000"
        configuration = try AWSConfiguration.resolve(region: nil, environment: environment)
        #expect(configuration.region == "eu-central-1")
        #expect(configuration.endpoint.absoluteString == "http://127.0.0.1:5000")
    }

    @Test("AWS_DEFAULT_REGION when AWS_REGION is unset; an empty variable counts as unset")
    func defaultRegion() throws {
        let home = try AWSHome()
        defer { home.remove() }
        let configuration = try AWSConfiguration.resolve(
            region: "",
            environment: home.environment([
                "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "secret-env", "AWS_REGION": "",
                "AWS_DEFAULT_REGION": "us-west-2",
            ]))
        #expect(configuration.region == "us-west-2")
    }

    @Test("keys and region of the default profile from ~/.aws/credentials and ~/.aws/config")
    func defaultProfileFromFiles() throws {
        let home = try AWSHome(
            credentials: """
                # kiln test
                [other]
                aws_access_key_id = AKIDOTHER
                aws_secret_access_key = secret-other

                [default]
                aws_access_key_id = AKIDDEFAULT
                aws_secret_access_key=secret-default
                aws_session_token = token-default
                """,
            config: """
                [profile other]
                region = eu-west-3
                [default]
                region = sa-east-1
                s3 =
                  region = not-this-one
                """)
        defer { home.remove() }
        let configuration = try AWSConfiguration.resolve(region: nil, environment: home.environment())
        #expect(
            configuration.credentials
                == AWSCredentials(accessKeyID: "AKIDDEFAULT", secretAccessKey: "secret-default", sessionToken: "token-default"))
        #expect(configuration.region == "sa-east-1")
        #expect(configuration.endpoint.absoluteString == "https://ec2.sa-east-1.amazonaws.com")
    }

    @Test("AWS_PROFILE picks [NAME] in the credentials file and [profile NAME] in the config file")
    func namedProfile() throws {
        let home = try AWSHome(
            credentials:
                "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n[ci]\naws_access_key_id = AKIDCI\naws_secret_access_key = c\n",
            config: "[default]\nregion = us-east-1\n[profile   ci]\nregion = eu-north-1\n")
        defer { home.remove() }
        let configuration = try AWSConfiguration.resolve(region: nil, environment: home.environment(["AWS_PROFILE": "ci"]))
        #expect(configuration.credentials == AWSCredentials(accessKeyID: "AKIDCI", secretAccessKey: "c"))
        #expect(configuration.region == "eu-north-1")
    }

    @Test("AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE replace the files in ~/.aws; keys may sit in the config file")
    func filesNamedByVariables() throws {
        let home = try AWSHome(
            credentials: "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = h\n",
            config: "[default]\nregion = us-east-1\n")
        defer { home.remove() }
        let elsewhere = home.path + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try "[profile ci]\nregion = ca-central-1\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = k\n".write(
            toFile: elsewhere + "/config", atomically: true, encoding: .utf8)
        let configuration = try AWSConfiguration.resolve(
            region: nil,
            environment: home.environment([
                "AWS_PROFILE": "ci", "AWS_CONFIG_FILE": elsewhere + "/config",
                "AWS_SHARED_CREDENTIALS_FILE": elsewhere + "/no-such-file",
            ]))
        #expect(configuration.credentials == AWSCredentials(accessKeyID: "AKIDCONFIG", secretAccessKey: "k"))
        #expect(configuration.region == "ca-central-1")
    }

    @Test("nothing anywhere: one error naming every variable and file looked at, for credentials and region")
    func nothingFound() throws {
        let home = try AWSHome()
        defer { home.remove() }
        let message = resolutionError(home.environment(["AWS_EC2_METADATA_DISABLED": "true"]))
        #expect(
            message
                == "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and for profile \"default\" "
                + "(AWS_PROFILE is not set) \(home.path)/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE is not set) does not exist, "
                + "and \(home.path)/.aws/config (AWS_CONFIG_FILE is not set) does not exist, no container credentials endpoint is set, "
                + "and AWS_EC2_METADATA_DISABLED keeps kiln from asking the instance; "
                + "no AWS region: the template sets none, AWS_REGION and AWS_DEFAULT_REGION are not set, and for profile "
                + "\"default\" (AWS_PROFILE is not set) \(home.path)/.aws/config (AWS_CONFIG_FILE is not set) does not exist")
    }

    @Test("a profile missing from existing files is named with the section looked for")
    func profileMissing() throws {
        let home = try AWSHome(
            credentials: "[default]\naws_access_key_id = A\naws_secret_access_key = B\n", config: "[default]\nregion = us-east-1\n")
        defer { home.remove() }
        let message = resolutionError(home.environment(["AWS_PROFILE": "prod", "AWS_EC2_METADATA_DISABLED": "true"]))
        #expect(message.contains("for profile \"prod\" (AWS_PROFILE)"))
        #expect(message.contains("\(home.path)/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE is not set) has no [prod] section"))
        #expect(message.contains("\(home.path)/.aws/config (AWS_CONFIG_FILE is not set) has no [profile prod] section"))
        #expect(message.contains("no AWS region"))
    }

    @Test("half a key pair is an error, not a fall-through to the files")
    func halfAKeyPair() throws {
        let home = try AWSHome(credentials: "[default]\naws_access_key_id = A\naws_secret_access_key = B\n")
        defer { home.remove() }
        #expect(
            resolutionError(region: "us-east-1", home.environment(["AWS_ACCESS_KEY_ID": "AKIDENV"]))
                == "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        let broken = try AWSHome(credentials: "[default]\naws_access_key_id = A\n")
        defer { broken.remove() }
        #expect(
            resolutionError(region: "us-east-1", broken.environment())
                == "\(broken.path)/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE is not set): [default] has aws_access_key_id but no aws_secret_access_key"
        )
    }

    @Test("a malformed endpoint or region is refused, naming the variable")
    func malformedSettings() throws {
        let home = try AWSHome()
        defer { home.remove() }
        let keys = ["AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B"]
        #expect(
            resolutionError(region: "us-east-1", home.environment(keys.merging(["AWS_ENDPOINT_URL": "localhost:5000"]) { $1 }))
                == "AWS_ENDPOINT_URL \"localhost:5000\" is not an http:// or https:// URL")
        #expect(resolutionError(region: "US East", home.environment(keys)).contains("AWS region \"US East\" is not a region name"))
    }
}
