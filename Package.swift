// swift-tools-version: 6.2
import PackageDescription

// Modules depend only downwards (docs/architecture.md draws the graph):
//   KilnCore                     errors, processes, logs, hashing, concurrency helpers
//   KilnModel      -> Core       plain data: templates, steps, provider settings, image records
//   KilnTemplates  -> Model      YAML loading (Yams) into the model
//   KilnGraph      -> Templates  the image graph, GitLab pipelines
//   KilnDisk       -> Core       reading disks kiln does not mount: qcow2 chains (libnbd), ext4
//   KilnStore      -> Model      blobs, the catalog (SQLite, PostgreSQL), lifecycle, signing
//   KilnRegistry   -> Core       the OCI distribution API: one HTTP client (auth, retries, ranges)
//   KilnRemote     -> Store, Registry   the store's blobs in an OCI registry; the local store as its cache
//   KilnProviders  -> Model      qemu, aws and plugins, the SSH communicator; no catalog, no database
//   KilnBuild      -> Graph, Remote, Providers, Disk    the build pipeline
//   KilnExport     -> Store, Registry, Disk   export formats and registries
//   KilnServe      -> Store      kiln serve: the catalog as HTML pages and a JSON API (Hummingbird)
//   KilnCommands   -> Build, Export, Serve       the CLI; `kiln` is a thin main over it
// kiln builds and runs on Linux only: it uses Glibc directly, Linux user namespaces
// (mmdebstrap), /proc and QEMU's Linux host features. No `platforms:` line claims otherwise.
let package = Package(
    name: "kiln",
    products: [
        .executable(name: "kiln", targets: ["kiln"])
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // TLS to a PostgreSQL catalog (postgres-nio speaks it through NIOSSL).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // kiln serve: a maintained HTTP server and server-side Mustache templates.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CArchive",
            pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]
        ),
        // gzip for OCI layers: one pass that hashes the tar (diff_id) and the compressed blob.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // A qcow2 chain read in place (qemu-nbd behind libnbd), not flattened first.
        .systemLibrary(name: "CNBD", pkgConfig: "libnbd", providers: [.apt(["libnbd-dev"])]),
        .target(
            name: "KilnCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(name: "KilnModel", dependencies: ["KilnCore"]),
        .target(name: "KilnTemplates", dependencies: ["KilnCore", "KilnModel", "Yams"]),
        .target(name: "KilnDisk", dependencies: ["KilnCore", "CNBD"]),
        .target(name: "KilnGraph", dependencies: ["KilnTemplates", "KilnModel", "Yams"]),
        .target(
            name: "KilnStore",
            dependencies: [
                "KilnCore", "KilnModel", "CArchive", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(name: "KilnRegistry", dependencies: ["KilnCore", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "KilnRemote", dependencies: ["KilnStore", "KilnRegistry", "KilnModel", "KilnCore"]),
        .target(
            name: "KilnProviders",
            dependencies: ["KilnCore", "KilnModel", "CArchive", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "KilnBuild",
            dependencies: [
                "KilnGraph", "KilnModel", "KilnStore", "KilnRemote", "KilnProviders", "KilnDisk", .product(name: "Yams", package: "Yams"),
            ]),
        .target(
            name: "KilnExport",
            dependencies: [
                "KilnStore", "KilnRegistry", "KilnModel", "KilnCore", "KilnDisk", "CArchive", "CZlib",
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "KilnServe",
            dependencies: [
                "KilnStore", "KilnModel", "KilnCore", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"), .product(name: "HTTPTypes", package: "swift-http-types"),
            ]),
        .target(
            name: "KilnCommands",
            dependencies: ["KilnBuild", "KilnExport", "KilnServe", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "kiln", dependencies: ["KilnCommands"]),
        // Catalog benchmarks at scale (bench/catalog.sh); not part of the test suite.
        .executableTarget(
            name: "kiln-bench", dependencies: ["KilnStore", "KilnModel", "KilnCore", .product(name: "GRDB", package: "GRDB.swift")],
            path: "bench/Sources/kiln-bench"
        ),
        // Shared by the test targets: catalogs on SQLite and on a test PostgreSQL server, fixture
        // servers. `swift build` builds it with the product, in release too: so it imports neither
        // Testing nor a module for testing (each broke `make demo` once).
        .target(name: "KilnTestSupport", dependencies: ["KilnStore", "KilnModel", "KilnCore"], path: "Tests/KilnTestSupport"),
        .testTarget(name: "KilnCoreTests", dependencies: ["KilnCore"]),
        .testTarget(name: "KilnModelTests", dependencies: ["KilnModel"]),
        .testTarget(name: "KilnTemplatesTests", dependencies: ["KilnTemplates", "KilnModel", "Yams"]),
        .testTarget(name: "KilnGraphTests", dependencies: ["KilnGraph", "KilnTestSupport"]),
        .testTarget(name: "KilnStoreTests", dependencies: ["KilnStore", "KilnTestSupport"]),
        .testTarget(
            name: "KilnProvidersTests", dependencies: ["KilnProviders", "KilnModel", "KilnCore", "KilnTestSupport"],
            // Run from its source path by EC2ClientTests (a throttling front for moto_server), not bundled.
            exclude: ["Fixtures/ec2_throttle_proxy.py", "Fixtures/imds_server.py"]),
        .testTarget(
            name: "KilnBuildTests",
            dependencies: [
                "KilnBuild", "KilnExport", "KilnRemote", "KilnRegistry", "KilnServe", "KilnModel", "KilnTestSupport", "Yams",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            // Run from their source paths by DownloadTests (a loopback HTTP server) and
            // PluginProviderTests (misbehaving plugins), not bundled.
            exclude: ["Fixtures/range_server.py", "Fixtures/faulty_plugin.py"]),
        .testTarget(
            name: "KilnExportTests", dependencies: ["KilnExport", "KilnRegistry", "KilnDisk", "KilnModel", "KilnTestSupport"],
            // Run from its source path by RegistryTests (an auth front for a loopback registry), not bundled.
            exclude: ["Fixtures/token_proxy.py", "Fixtures/redirect_server.py", "Fixtures/verify_dsse.py"]),
        .testTarget(name: "KilnVMTests", dependencies: ["KilnBuild", "KilnExport", "KilnModel", "KilnTestSupport", "Yams"]),
    ]
)
