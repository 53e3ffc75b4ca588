import Foundation
import KilnCore
import Testing

extension VMBuildTests {
    @Test(
        "Tests/Fixtures/greeter, which the plugin and aws tests build as it is, builds on qemu with its defaults: the greeting step's file and the uploaded motd are on the disk"
    )
    func greeterOnQemu() async throws {
        let scratch = try await exampleAndScratchDirectory("greeter")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let greeter = Repo.root + "/Tests/Fixtures/greeter"
        let build = try await SharedStore.shared.kiln(["build", greeter, "--var", "download_to=\(scratch)/out"])
        #expect(build.status == 0, "\(build.stderr.suffix(3000))")
        let image = try await SharedStore.shared.image("greeter")
        #expect(image["provider"] as? String == "qemu" && image["artifact"] == nil)
        let disk = try await FlatDisk(of: try #require(image["disk"] as? String))
        defer { disk.remove() }
        #expect(try await disk.cat("/etc/greeter/greeting") == "hello from kiln\n")
        // The last step copied it back out of the VM (scp over the build's connection).
        #expect(try String(contentsOfFile: scratch + "/out/greeting", encoding: .utf8) == "hello from kiln\n")
        #expect(try await disk.cat("/etc/motd") == (try String(contentsOfFile: greeter + "/files/motd", encoding: .utf8)))
    }
}
