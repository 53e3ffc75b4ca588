// B8: a generated graph of `count` templates, five levels deep, for timing validate and plan.
import Foundation
import KilnCore

/// Level 0 images start from one small local disk (so planning needs no network); every image
/// of level k > 0 is a layer on an image of level k - 1.
func generateGraph(directory: String, count: Int) throws {
    let levels = 5
    let perLevel = max(1, count / levels)
    let fm = FileManager.default
    try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let disk = Data(repeating: 0, count: 1 << 16)
    try disk.write(to: URL(fileURLWithPath: directory + "/source.img"))
    let sha = Hashing.sha256Hex(disk)
    for level in 0..<levels {
        for index in 0..<perLevel {
            let from =
                level == 0
                ? "from:\n  file: {path: source.img, sha256: \(sha)}\n"
                : "from:\n  image: l\(level - 1)-i\((index * 7) % perLevel)\n"
            let text = """
                image: l\(level)-i\(index)
                description: generated level \(level), image \(index)
                \(from)vars:
                  release: {default: "\(index)"}
                provision:
                  - shell: echo ${var.release} > /etc/l\(level)-i\(index)
                  - shell: {inline: "true", env: {LEVEL: "\(level)"}}
                labels: {level: "\(level)"}

                """
            try text.write(toFile: directory + "/l\(level)-i\(index).yaml", atomically: false, encoding: .utf8)
        }
    }
    print("\(levels * perLevel) templates in \(levels) levels written to \(directory)")
}
