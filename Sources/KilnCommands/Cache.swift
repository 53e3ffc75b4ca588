import ArgumentParser

struct Cache: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show or prune the source cache (source disks and downloads).",
        discussion: """
            Base images start from source disks that kiln makes from a debootstrap tree, a file \
            or a URL; they are kept, keyed by their inputs (the mirror's state included), and \
            verified by digest before reuse. Downloads are kept by checksum. The cache is pruned \
            to KILN_CACHE_MAX_SIZE (default 20G) after every build, least recently used first; a \
            source disk that an image is built on is never removed.
            """,
        subcommands: [CacheList.self, CachePrune.self],
        defaultSubcommand: CacheList.self)
}
