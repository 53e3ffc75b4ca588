import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(FoundationXML)
    import FoundationXML
#endif

/// The EC2 Query API over URLSession: form-encoded POSTs signed with SigV4, XML answers.
///
/// Written by hand for the calls the aws provider makes: there is no AWS SDK for Swift that
/// kiln can build with on Linux.
public struct EC2Client: Sendable {
    public let configuration: AWSConfiguration
    public let retry: RetryPolicy
    let onRetry: (@Sendable (String) -> Void)?
    /// Keys given outright, or fetched (and refreshed) when a request needs them.
    let credentials: AWSCredentialProvider

    static let apiVersion = "2016-11-15"

    /// One session for every client: it holds no credentials, and a session per client would
    /// never be invalidated, as a struct has no deinit.
    static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpShouldSetCookies = false
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    /// - Parameter onRetry: one line per retry, for the build log
    ///   (`EC2 RunInstances: RequestLimitExceeded (HTTP 503), retrying in 0.4s (attempt 2 of 5)`).
    public init(configuration: AWSConfiguration, retry: RetryPolicy = .standard, onRetry: (@Sendable (String) -> Void)? = nil) {
        self.configuration = configuration
        self.retry = retry
        self.onRetry = onRetry
        credentials = AWSCredentialProvider(
            source: configuration.credentialSource, region: configuration.region, stsEndpoint: configuration.stsEndpoint)
    }

    // MARK: Instances

    /// Launches one instance and returns its id.
    ///
    /// A client token goes with the request, the same on every retry: EC2 launches once for it
    /// even when an answer was lost and the request sent again.
    public func runInstance(
        imageID: String, instanceType: String, keyName: String?, subnetID: String?, securityGroupIDs: [String],
        tags: [String: String]
    ) async throws -> String {
        var parameters: [(String, String)] = [
            ("ImageId", imageID), ("InstanceType", instanceType), ("MinCount", "1"), ("MaxCount", "1"),
            ("ClientToken", UUID().uuidString),
        ]
        if let keyName { parameters.append(("KeyName", keyName)) }
        if let subnetID { parameters.append(("SubnetId", subnetID)) }
        for (index, group) in securityGroupIDs.enumerated() { parameters.append(("SecurityGroupId.\(index + 1)", group)) }
        if !tags.isEmpty {
            parameters.append(("TagSpecification.1.ResourceType", "instance"))
            parameters += Self.tagParameters(tags, prefix: "TagSpecification.1.Tag")
        }
        let response = try await call("RunInstances", parameters)
        guard let id = response.items("instancesSet").first?.text("instanceId") else {
            throw KilnError(.providerFailed, "EC2 RunInstances answered without an instance id")
        }
        return id
    }

    /// The instance's serial console output so far (GetConsoleOutput), decoded; nil when EC2
    /// has none yet.
    public func consoleOutput(_ id: String) async throws -> String? {
        let tree = try await call("GetConsoleOutput", [("InstanceId", id), ("Latest", "true")])
        guard let encoded = tree.text("output"), !encoded.isEmpty,
            let data = Data(base64Encoded: encoded.filter { !$0.isWhitespace })
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    public func describeInstance(_ id: String) async throws -> EC2Instance {
        let found = try await describeInstances(parameters: [("InstanceId.1", id)])
        guard let instance = found.first(where: { $0.id == id }) else {
            throw KilnError(.notFound, "EC2 DescribeInstances: instance \(id) is not in the answer")
        }
        return instance
    }

    /// Polls until the instance is in `state`.
    ///
    /// - Throws: ``KilnError/Code/timeout`` naming the instance and its last state;
    ///   ``KilnError/Code/providerFailed`` as soon as the instance is in a state it cannot leave
    ///   for `state` (terminated while waiting for running).
    public func waitForInstance(_ id: String, state: String, timeout: Duration, poll: Duration = .seconds(2)) async throws
        -> EC2Instance
    {
        let deadline = ContinuousClock.now + timeout
        var last = "not visible yet"
        while true {
            do {
                let instance = try await describeInstance(id)
                if instance.state == state { return instance }
                last = instance.state
                if Self.isDeadEnd(instance.state, wanted: state) {
                    throw KilnError(.providerFailed, "EC2 instance \(id) is \(instance.state) and will not become \(state)")
                }
            } catch let error as EC2Error where error.code == "InvalidInstanceID.NotFound" {
                // EC2 is eventually consistent: an instance just launched may not be described yet.
            } catch let error as KilnError where error.code == .notFound {
                // The same, as an empty answer.
            }
            try await sleep(poll, until: deadline) {
                "EC2 instance \(id) did not become \(state) within \(Self.seconds(timeout)) (last state: \(last))"
            }
        }
    }

    public func stopInstance(_ id: String) async throws {
        _ = try await call("StopInstances", [("InstanceId.1", id)])
    }

    public func terminateInstance(_ id: String) async throws {
        _ = try await call("TerminateInstances", [("InstanceId.1", id)])
    }

    /// Every instance matching all filters (`tag:kiln:build` -> [id]; values of one filter are alternatives).
    public func describeInstances(filters: [String: [String]]) async throws -> [EC2Instance] {
        try await describeInstances(parameters: Self.filterParameters(filters))
    }

    private func describeInstances(parameters: [(String, String)]) async throws -> [EC2Instance] {
        try await paginated("DescribeInstances", parameters) { response in
            response.items("reservationSet").flatMap { $0.items("instancesSet") }.map { item in
                EC2Instance(
                    id: item.text("instanceId") ?? "", state: item.child("instanceState")?.text("name") ?? "",
                    publicIP: item.text("ipAddress"), privateIP: item.text("privateIpAddress"))
            }
        }
    }

    // MARK: Key pairs

    /// Creates an RSA key pair and returns its private key (PEM), which EC2 does not keep.
    public func createKeyPair(name: String) async throws -> String {
        let response = try await call("CreateKeyPair", [("KeyName", name)])
        guard let material = response.text("keyMaterial") else {
            throw KilnError(.providerFailed, "EC2 CreateKeyPair answered without key material for \(name)")
        }
        return material
    }

    public func deleteKeyPair(name: String) async throws {
        _ = try await call("DeleteKeyPair", [("KeyName", name)])
    }

    /// Which of `names` exist (EC2 filter values: `*` and `?` are wildcards). A filter, not
    /// `KeyName.N`: EC2 fails the whole call when one named key pair is missing.
    public func describeKeyPairs(names: [String]) async throws -> [String] {
        guard !names.isEmpty else { return [] }
        let response = try await call("DescribeKeyPairs", Self.filterParameters(["key-name": names]))
        return response.items("keySet").compactMap { $0.text("keyName") }
    }

    // MARK: Images

    /// Starts making an image of the instance and returns its id; it is `pending` until the snapshots are done.
    public func createImage(instanceID: String, name: String, description: String) async throws -> String {
        let response = try await call(
            "CreateImage", [("InstanceId", instanceID), ("Name", name), ("Description", description)])
        guard let id = response.text("imageId") else {
            throw KilnError(.providerFailed, "EC2 CreateImage answered without an image id for \(name)")
        }
        return id
    }

    /// The image, or nil when EC2 does not know it (any more).
    public func describeImage(_ id: String) async throws -> EC2Image? {
        do {
            return try await describeImages(parameters: [("ImageId.1", id)]).first { $0.id == id }
        } catch let error as EC2Error where error.code == "InvalidAMIID.NotFound" {
            return nil
        }
    }

    /// Polls until the image is `available`.
    ///
    /// - Throws: ``KilnError/Code/timeout`` naming the image and its last state;
    ///   ``KilnError/Code/providerFailed`` when the image fails or goes away.
    public func waitForImage(_ id: String, timeout: Duration, poll: Duration = .seconds(2)) async throws -> EC2Image {
        let deadline = ContinuousClock.now + timeout
        var last = "not visible yet"
        while true {
            // Nil is not an answer yet: EC2 may not describe an image just created.
            if let image = try await describeImage(id) {
                if image.state == "available" { return image }
                last = image.state
                if ["failed", "error", "invalid", "deregistered", "disabled"].contains(image.state) {
                    let reason = image.stateReason.map { ": \($0)" } ?? ""
                    throw KilnError(.providerFailed, "EC2 image \(id) (\(image.name)) is \(image.state)\(reason)")
                }
            }
            try await sleep(poll, until: deadline) {
                "EC2 image \(id) did not become available within \(Self.seconds(timeout)) (last state: \(last))"
            }
        }
    }

    /// Images owned by any of `owners` (account ids, `self`, `amazon`) matching all filters.
    public func describeImages(owners: [String], filters: [String: [String]]) async throws -> [EC2Image] {
        var parameters = owners.enumerated().map { ("Owner.\($0.offset + 1)", $0.element) }
        parameters += Self.filterParameters(filters)
        return try await describeImages(parameters: parameters)
    }

    private func describeImages(parameters: [(String, String)]) async throws -> [EC2Image] {
        try await paginated("DescribeImages", parameters) { response in
            response.items("imagesSet").map { item in
                var tags: [String: String] = [:]
                for tag in item.items("tagSet") {
                    if let key = tag.text("key") { tags[key] = tag.text("value") ?? "" }
                }
                let reason = item.child("stateReason").flatMap { $0.text("message") ?? $0.text("code") }
                return EC2Image(
                    id: item.text("imageId") ?? "", name: item.text("name") ?? "", state: item.text("imageState") ?? "",
                    snapshotIDs: item.items("blockDeviceMapping").compactMap { $0.child("ebs")?.text("snapshotId") },
                    tags: tags, deprecationTime: item.text("deprecationTime"), stateReason: reason)
            }
        }
    }

    /// Sets tags (replacing values of keys already there) on instances, images, snapshots.
    public func createTags(resources: [String], tags: [String: String]) async throws {
        var parameters = resources.enumerated().map { ("ResourceId.\($0.offset + 1)", $0.element) }
        parameters += Self.tagParameters(tags, prefix: "Tag")
        _ = try await call("CreateTags", parameters)
    }

    /// From `at` on, the image no longer shows in others' searches (EC2 rounds to the minute).
    public func enableImageDeprecation(_ id: String, at: Date) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        _ = try await call("EnableImageDeprecation", [("ImageId", id), ("DeprecateAt", formatter.string(from: at))])
    }

    /// The image can no longer launch instances; unlike deregistering, this can be undone.
    public func disableImage(_ id: String) async throws {
        _ = try await call("DisableImage", [("ImageId", id)])
    }

    /// Removes the image; its snapshots stay until ``deleteSnapshot(_:)``.
    public func deregisterImage(_ id: String) async throws {
        _ = try await call("DeregisterImage", [("ImageId", id)])
    }

    public func deleteSnapshot(_ id: String) async throws {
        _ = try await call("DeleteSnapshot", [("SnapshotId", id)])
    }

}
