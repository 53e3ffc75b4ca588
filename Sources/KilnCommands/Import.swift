import ArgumentParser
import Foundation
import KilnCore
import KilnTemplates

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a template of another tool into a kiln template.",
        subcommands: [ImportPacker.self])
}

struct ImportPacker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "packer",
        abstract: "Write a kiln template from a Packer QEMU template (HCL2 .pkr.hcl or legacy JSON).",
        discussion: """
            Variables (sensitive ones too), the qemu source's disk, memory and CPUs, and the \
            shell, file, shell-local, ansible and breakpoint provisioners with their \
            environment_vars, max_retries, pause_before, timeout and only/except are carried \
            over. Everything else is reported as file:line:col: warning: lines on standard error \
            and as comments at the top of the template: installer ISOs driven by boot_command, \
            Windows provisioners, expect_disconnect reboots, HCL functions, post-processors. \
            Check the template with kiln validate. See docs/from-packer.md.

              kiln import packer debian.pkr.hcl --output images/
              kiln validate images
            """)

    @Argument(help: ArgumentHelp("The Packer template.", valueName: "file"), completion: .file(extensions: ["hcl", "json"]))
    var file: String

    @Option(help: ArgumentHelp("The kiln family (default: from the source's name).", valueName: "name"))
    var family: String?

    @Option(
        help: ArgumentHelp(
            "Write the template here: a directory (FAMILY.yaml in it) or a file; default: standard output.", valueName: "path"),
        completion: .file())
    var output: String?

    @Flag(help: "Replace a template that exists at the output path.")
    var force = false

    func run() async throws {
        let imported = try PackerImport.convert(try PackerTemplate.read(file), family: family)
        for note in imported.notes { printError(note.description) }
        guard let output else {
            print(imported.yaml, terminator: "")
            return
        }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory)
        let path =
            exists && isDirectory.boolValue || output.hasSuffix("/")
            ? (output as NSString).appendingPathComponent(imported.family + ".yaml") : output
        if FileManager.default.fileExists(atPath: path) && !force {
            throw KilnError(.invalidInput, "\(path) exists (--force replaces it)")
        }
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent,
            withIntermediateDirectories: true)
        try imported.yaml.write(toFile: path, atomically: true, encoding: .utf8)
        print(
            "wrote \(path) (family \(imported.family), \(imported.notes.count) warning\(imported.notes.count == 1 ? "" : "s")): check it with kiln validate"
        )
    }
}
