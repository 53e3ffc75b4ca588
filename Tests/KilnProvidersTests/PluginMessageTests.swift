import Foundation
import KilnModel
import Testing

@testable import KilnProviders

@Suite("Plugin protocol messages")
struct PluginMessageTests {
    @Test("a create-instance request carries the documented keys, the settings with their YAML types, and the parent's artifact")
    func createInstanceShape() throws {
        var create = PluginMessage.CreateInstance(
            buildID: "b1", family: "web", scratchDirectory: "/s", templateDirectory: "/t",
            settings: try JSONValue(json: #"{"busybox":"/opt/busybox","depth":3,"fast":true,"ratio":0.5}"#))
        create.parent = .init(directory: "/images/abc", artifact: ProviderArtifact(provider: "chroot", files: ["rootfs.tar": "00"]))
        let line = String(
            decoding: try PluginMessage.encode(PluginMessage.Request(id: 7, method: "create-instance", params: create)), as: UTF8.self)
        #expect(
            line
                == #"{"id":7,"method":"create-instance","params":{"build_id":"b1","family":"web","parent":{"artifact":{"details":{},"files":{"rootfs.tar":"00"},"provider":"chroot"},"directory":"/images/abc"},"scratch_directory":"/s","settings":{"busybox":"/opt/busybox","depth":3,"fast":true,"ratio":0.5},"template_directory":"/t"}}"#
        )
    }

    @Test("a cancel has no id of its own, only the cancelled request's")
    func cancelShape() throws {
        let line = try PluginMessage.encode(PluginMessage.Request(id: nil, method: "cancel", params: PluginMessage.Cancel(id: 4)))
        #expect(String(decoding: line, as: UTF8.self) == #"{"method":"cancel","params":{"id":4}}"#)
    }

    @Test("answers decode by their documented keys; a snapshot's non-string details are left out")
    func answers() throws {
        let executed = try JSONDecoder().decode(
            PluginMessage.Answer<PluginMessage.Executed>.self, from: Data(#"{"id":3,"result":{"exit_status":5}}"#.utf8))
        #expect(executed.result?.exitStatus == 5)
        let snapshot = try JSONDecoder().decode(
            PluginMessage.Answer<PluginMessage.Snapshotted>.self,
            from: Data(#"{"id":4,"result":{"files":["rootfs.tar"],"details":{"arch":"amd64","layers":2}}}"#.utf8))
        #expect(snapshot.result?.files == ["rootfs.tar"])
        #expect(snapshot.result?.details?.compactMapValues(\.string) == ["arch": "amd64"])
        let failed = try JSONDecoder().decode(
            PluginMessage.Answer<PluginMessage.Empty>.self, from: Data(#"{"id":5,"error":{"code":"timeout","message":"slow"}}"#.utf8))
        #expect(failed.error?.code == "timeout" && failed.error?.message == "slow")
    }
}
