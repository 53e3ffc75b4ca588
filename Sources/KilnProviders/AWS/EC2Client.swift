import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(FoundationXML)
    import FoundationXML
#endif

public struct EC2Instance: Sendable, Equatable {
    public var id: String
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down` or `terminated`.
    public var state: String
    public var publicIP: String?
    public var privateIP: String?

    public init(id: String, state: String, publicIP: String? = nil, privateIP: String? = nil) {
        self.id = id
        self.state = state
        self.publicIP = publicIP
        self.privateIP = privateIP
    }
}

public struct EC2Image: Sendable, Equatable {
    public var id: String
    public var name: String
    /// `pending`, `available`, `failed`, `disabled`, `deregistered` and the like.
    public var state: String
    /// The EBS snapshots behind the image: deregistering an image leaves them (and their cost) behind.
    public var snapshotIDs: [String]
    public var tags: [String: String]
    /// As EC2 writes it (`2030-01-01T00:00:00.000Z`); nil when no deprecation is set.
    public var deprecationTime: String?
    /// Why the image is in its state, when EC2 says (a failed image's reason, say).
    public var stateReason: String?

    public init(
        id: String, name: String, state: String, snapshotIDs: [String] = [], tags: [String: String] = [:],
        deprecationTime: String? = nil, stateReason: String? = nil
    ) {
        self.id = id
        self.name = name
        self.state = state
        self.snapshotIDs = snapshotIDs
        self.tags = tags
        self.deprecationTime = deprecationTime
        self.stateReason = stateReason
    }
}

/// An error EC2 answered (or an answer that was not EC2's), with what identifies it in AWS's logs.
public struct EC2Error: Error, Sendable, CustomStringConvertible, LocalizedError {
    /// AWS's error code (`InvalidAMIID.NotFound`, `RequestLimitExceeded`), or kiln's name for an
    /// answer that carried none: ``notImplementedCode``, ``unexpectedResponseCode``.
    public var code: String
    public var message: String
    public var httpStatus: Int
    public var requestID: String?
    public var action: String
    /// How many requests were sent, retries included.
    public var attempts: Int

    /// moto's server answers an action it does not implement with HTTP 500 and Werkzeug's HTML
    /// "Internal Server Error" page (its traceback ends in `NotImplementedError`); kiln names that answer so.
    public static let notImplementedCode = "NotImplemented"
    /// An error answer without an AWS error document (a proxy's HTML page, say).
    public static let unexpectedResponseCode = "UnexpectedResponse"

    public init(
        code: String, message: String, httpStatus: Int, requestID: String? = nil, action: String, attempts: Int = 1
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.requestID = requestID
        self.action = action
        self.attempts = attempts
    }

    /// The endpoint does not implement the action (moto 5.x for EnableImageDeprecation / DisableImage, say): callers degrade with a warning.
    public var isUnsupported: Bool {
        ["InvalidAction", "UnsupportedOperation", Self.notImplementedCode].contains(code)
    }

    /// `InvalidInstanceID.NotFound`, `InvalidAMIID.NotFound`, `InvalidKeyPair.NotFound` and the like.
    public var isNotFound: Bool { code.hasSuffix(".NotFound") }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled", "TooManyRequestsException",
    ]

    /// Worth sending again: EC2 was busy or broken, not the request. An unsupported action stays
    /// unsupported however often it is asked for.
    var isRetryable: Bool {
        if isUnsupported { return false }
        return Self.throttlingCodes.contains(code) || httpStatus == 429 || (500...599).contains(httpStatus)
    }

    public var description: String {
        var text = "EC2 \(action): \(code)"
        if !message.isEmpty { text += ": \(message)" }
        text += " (HTTP \(httpStatus)"
        if let requestID { text += ", request id \(requestID)" }
        if attempts > 1 { text += ", after \(attempts) attempts" }
        return text + ")"
    }

    public var errorDescription: String? { description }
}

/// How often and how patiently a request is sent again after throttling, a 5xx or a lost connection.
public struct RetryPolicy: Sendable {
    /// Requests in all, the first included.
    public var attempts: Int
    /// The wait before the first retry; it doubles for each one after, up to `maxDelay`.
    public var baseDelay: Duration
    public var maxDelay: Duration

    public init(attempts: Int, baseDelay: Duration, maxDelay: Duration) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Five attempts from half a second: a throttled account gets about 7 s in all to calm down.
    public static let standard = RetryPolicy(attempts: 5, baseDelay: .milliseconds(500), maxDelay: .seconds(20))

    /// The wait after failed attempt `attempt` (1-based). Half of it is random so that many
    /// clients throttled together do not come back together.
    func delay(after attempt: Int) -> Duration {
        let base = baseDelay.seconds * pow(2, Double(max(0, attempt - 1)))
        let capped = min(base, maxDelay.seconds)
        return .seconds(capped * Double.random(in: 0.5...1))
    }
}

/// The EC2 Query API over URLSession: form-encoded POSTs signed with SigV4, XML answers.
///
/// Written by hand for the calls the aws provider makes: there is no AWS SDK for Swift that
/// kiln can build with on Linux.
public struct EC2Client: Sendable {
    public let configuration: AWSConfiguration
    public let retry: RetryPolicy
    private let onRetry: (@Sendable (String) -> Void)?
    private let signer: SigV4Signer

    static let apiVersion = "2016-11-15"

    /// One session for every client: it holds no credentials, and a session per client would
    /// never be invalidated, as a struct has no deinit.
    private static let session: URLSession = {
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
        signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region, service: "ec2")
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

    // MARK: Requests

    /// Every page of a Describe call: EC2 pages when it answers with a `nextToken`.
    private func paginated<Item>(
        _ action: String, _ parameters: [(String, String)], _ read: (XMLTree) -> [Item]
    ) async throws -> [Item] {
        var items: [Item] = []
        var token: String?
        repeat {
            let response = try await call(action, parameters + (token.map { [("NextToken", $0)] } ?? []))
            items += read(response)
            token = response.text("nextToken")
        } while token != nil
        return items
    }

    /// Sends one action, retrying as the policy allows, and returns the answer's document.
    ///
    /// - Throws: ``EC2Error`` for an error answer; ``KilnError/Code/io`` when no answer came
    ///   (after the retries), ``KilnError/Code/cancelled`` when the task was cancelled.
    private func call(_ action: String, _ parameters: [(String, String)]) async throws -> XMLTree {
        let body = Data(
            Self.formEncode([("Action", action), ("Version", Self.apiVersion)] + parameters).utf8)
        var attempt = 1
        while true {
            let answer: (Data, HTTPURLResponse)
            do {
                answer = try await exchange(body)
            } catch {
                if Task.isCancelled { throw KilnError(.cancelled, "EC2 \(action) was cancelled") }
                let origin = "EC2 \(action) at \(configuration.endpoint.absoluteString)"
                if let lost = error as? URLError, Self.isConnectionLoss(lost) {
                    if attempt < retry.attempts {
                        try await pause(action, "connection lost (\(lost.localizedDescription))", attempt: attempt)
                        attempt += 1
                        continue
                    }
                    throw KilnError(.io, "\(origin): \(lost.localizedDescription) (after \(attempt) attempts)", cause: lost)
                }
                throw KilnError(.io, "\(origin): \(error.localizedDescription)")
            }
            switch Self.interpret(answer.1, body: answer.0, action: action) {
            case .success(let document): return document
            case .failure(var error):
                if error.isRetryable && attempt < retry.attempts {
                    try await pause(action, "\(error.code) (HTTP \(error.httpStatus))", attempt: attempt)
                    attempt += 1
                    continue
                }
                error.attempts = attempt
                throw error
            }
        }
    }

    private func exchange(_ body: Data) async throws -> (Data, HTTPURLResponse) {
        let signed = signer.sign(
            SignableRequest(
                method: "POST", url: configuration.endpoint,
                headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"], body: body),
            at: Date())
        var request = URLRequest(url: configuration.endpoint)
        request.httpMethod = "POST"
        for (name, value) in signed.headers { request.setValue(value, forHTTPHeaderField: name) }
        request.setValue("kiln/\(KilnVersion.current)", forHTTPHeaderField: "User-Agent")
        request.httpBody = body
        let (data, response) = try await Self.session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        return (data, http)
    }

    private func pause(_ action: String, _ reason: String, attempt: Int) async throws {
        let delay = retry.delay(after: attempt)
        onRetry?(
            "EC2 \(action): \(reason), retrying in \(String(format: "%.1f", delay.seconds))s (attempt \(attempt + 1) of \(retry.attempts))")
        do { try await Task.sleep(for: delay) } catch { throw KilnError(.cancelled, "EC2 \(action) was cancelled") }
    }

    /// Sleeps `poll`, or throws a timeout when the deadline would pass first.
    private func sleep(_ poll: Duration, until deadline: ContinuousClock.Instant, _ timeout: () -> String) async throws {
        guard ContinuousClock.now + poll <= deadline else { throw KilnError(.timeout, timeout()) }
        do { try await Task.sleep(for: poll) } catch { throw KilnError(.cancelled, "waiting on EC2 was cancelled") }
    }

    /// What an answer means: its document, or the error it carries.
    static func interpret(_ response: HTTPURLResponse, body: Data, action: String) -> Result<XMLTree, EC2Error> {
        let status = response.statusCode
        let headerRequestID =
            response.value(forHTTPHeaderField: "x-amzn-RequestId") ?? response.value(forHTTPHeaderField: "x-amz-request-id")
        let contentType = response.value(forHTTPHeaderField: "Content-Type") ?? ""
        let document = XMLTree.parse(body)
        if (200...299).contains(status) {
            if let document { return .success(document) }
            return .failure(
                EC2Error(
                    code: EC2Error.unexpectedResponseCode, message: "the answer is not XML: " + snippet(body),
                    httpStatus: status, requestID: headerRequestID, action: action))
        }
        // <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>
        if let document, let error = document.child("Errors")?.child("Error") ?? document.child("Error"),
            let code = error.text("Code")
        {
            return .failure(
                EC2Error(
                    code: code, message: error.text("Message") ?? "", httpStatus: status,
                    requestID: document.text("RequestID") ?? document.text("RequestId") ?? headerRequestID, action: action))
        }
        if status == 500, contentType.lowercased().hasPrefix("text/html"),
            String(decoding: body, as: UTF8.self).contains("<title>500 Internal Server Error</title>")
        {
            return .failure(
                EC2Error(
                    code: EC2Error.notImplementedCode,
                    message:
                        "the endpoint answered HTTP 500 with Werkzeug's HTML error page, which is how moto's server answers an action it does not implement",
                    httpStatus: status, requestID: headerRequestID, action: action))
        }
        return .failure(
            EC2Error(
                code: EC2Error.unexpectedResponseCode,
                message: "an answer without an AWS error code" + (body.isEmpty ? "" : ": " + snippet(body)),
                httpStatus: status, requestID: headerRequestID, action: action))
    }

    /// The start of a body, on one line, for an error message.
    private static func snippet(_ body: Data) -> String {
        let text = String(decoding: body.prefix(300), as: UTF8.self)
        return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    static func isConnectionLoss(_ error: URLError) -> Bool {
        [.networkConnectionLost, .timedOut, .cannotConnectToHost, .notConnectedToInternet].contains(error.code)
    }

    /// A state the instance will not leave for `wanted` by itself.
    static func isDeadEnd(_ state: String, wanted: String) -> Bool {
        if ["shutting-down", "terminated"].contains(state) { return !["shutting-down", "terminated"].contains(wanted) }
        return wanted == "running" && ["stopping", "stopped"].contains(state)
    }

    /// `Name.N.Key` / `Name.N.Value`, sorted by key so requests are the same for the same tags.
    static func tagParameters(_ tags: [String: String], prefix: String) -> [(String, String)] {
        tags.sorted { $0.key < $1.key }.enumerated().flatMap { index, tag in
            [("\(prefix).\(index + 1).Key", tag.key), ("\(prefix).\(index + 1).Value", tag.value)]
        }
    }

    /// `Filter.N.Name` / `Filter.N.Value.M`, sorted by name.
    static func filterParameters(_ filters: [String: [String]]) -> [(String, String)] {
        filters.sorted { $0.key < $1.key }.enumerated().flatMap { index, filter in
            [("Filter.\(index + 1).Name", filter.key)]
                + filter.value.enumerated().map { ("Filter.\(index + 1).Value.\($0.offset + 1)", $0.element) }
        }
    }

    /// `application/x-www-form-urlencoded` as botocore writes it (Python's `urlencode`): all but
    /// letters, digits and `-_.~` escaped, a space as `+`. AWS hashes whatever bytes arrive, but
    /// moto checks a signature against the body it re-encodes from the parsed form that way.
    static func formEncode(_ parameters: [(String, String)]) -> String {
        func encode(_ text: String) -> String { SigV4Signer.uriEncode(text).replacingOccurrences(of: "%20", with: "+") }
        return parameters.map { encode($0.0) + "=" + encode($0.1) }.joined(separator: "&")
    }

    /// `300s`, `0.5s`.
    static func seconds(_ duration: Duration) -> String {
        let value = duration.seconds
        return value == value.rounded() ? "\(Int(value))s" : String(format: "%.1fs", value)
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// An XML document as a tree of elements, each with its text: enough to read EC2's answers,
/// which are plain nested elements (lists are `<xSet><item>…</item></xSet>`).
struct XMLTree: Sendable, Equatable {
    /// Without a namespace prefix.
    var name: String
    /// The element's own character data; meaningful for leaves.
    var text: String
    var children: [XMLTree]

    func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }

    /// A child's text; nil when the child is absent or empty (EC2 writes `<ipAddress/>` for none).
    func text(_ name: String) -> String? {
        guard let text = child(name)?.text, !text.isEmpty else { return nil }
        return text
    }

    /// The `item` children of the list `name`.
    func items(_ name: String) -> [XMLTree] { child(name)?.children.filter { $0.name == "item" } ?? [] }

    /// The root element, or nil when the data is not well-formed XML.
    static func parse(_ data: Data) -> XMLTree? {
        let parser = XMLParser(data: data)
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = false
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else { return nil }
        return builder.root
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [XMLTree] = []
    var root: XMLTree?

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
        stack.append(XMLTree(name: local, text: "", children: []))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if !stack.isEmpty { stack[stack.count - 1].text += string }
    }

    func parser(_ parser: XMLParser, foundCDATA block: Data) {
        if !stack.isEmpty { stack[stack.count - 1].text += String(decoding: block, as: UTF8.self) }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        guard var done = stack.popLast() else { return }
        // Whitespace between child elements is layout, not text.
        if !done.children.isEmpty && done.text.allSatisfy(\.isWhitespace) { done.text = "" }
        if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
    }
}
