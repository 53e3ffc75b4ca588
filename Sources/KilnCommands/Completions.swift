import ArgumentParser
import Foundation
import KilnStore

/// What a shell offers after TAB (`kiln --generate-completion-script bash|zsh|fish`, installed by
/// `make install`). Image names and families come from the store the command line names.
enum Completions {
    static let imageNames = CompletionKind.custom { arguments, _, prefix in names(arguments, prefix, families: true, images: true) }
    static let families = CompletionKind.custom { arguments, _, prefix in names(arguments, prefix, families: true, images: false) }
    static let templates = CompletionKind.file(extensions: ["yaml", "yml"])

    /// Reads the SQLite catalog of `--home` (or `$KILN_HOME`) and never creates one: a shell
    /// asking for completions must not leave a store behind, nor print errors into the command
    /// line. A PostgreSQL catalog is not asked: TAB must not wait on a network.
    private static func names(_ arguments: [String], _ prefix: String, families: Bool, images: Bool) -> [String] {
        let home = arguments.firstIndex(of: "--home").flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
        let root = home ?? Store.defaultRoot()
        guard FileManager.default.fileExists(atPath: root + "/catalog.sqlite"),
            let store = try? Store(root: root, catalog: "sqlite:\(root)/catalog.sqlite"),
            let records = try? store.catalog.images()
        else { return [] }
        var words: [String] = []
        if families { words += Set(records.map(\.family)).sorted() }
        if images { words += records.filter { $0.state != .deleted }.map(\.name) }
        return words.filter { $0.hasPrefix(prefix) }
    }
}
