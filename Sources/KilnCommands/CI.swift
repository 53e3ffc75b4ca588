import ArgumentParser
import KilnCore
import KilnGraph
import KilnModel
import KilnStore

struct CI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ci",
        abstract: "Hand an image graph to a CI system: one job per image, parents first.",
        subcommands: [CIGitLab.self])
}

struct CIGitLab: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gitlab",
        abstract: "Print a GitLab CI child pipeline that builds the graph, one job per image.",
        discussion: """
            Each job runs `kiln build DIR --only FAMILY`; `needs:` follow the image graph, so \
            independent images build on different runners at once and a child waits for its \
            parent. A job whose image is up to date finishes in seconds. The jobs must share one \
            catalog and store (KILN_CATALOG, KILN_HOME: docs/ci.md). Include the output from a \
            trigger job (examples/ci/gitlab-ci.yml):

              kiln ci gitlab images > child-pipeline.yml
            """)

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Option(help: ArgumentHelp("How the jobs run kiln.", valueName: "command"))
    var kiln = "kiln"

    @Option(help: ArgumentHelp("Runner tag for the build jobs (repeatable): runners that can run QEMU.", valueName: "tag"))
    var tag: [String] = []

    @Option(help: ArgumentHelp("Container image the jobs run in.", valueName: "image"))
    var image: String?

    @Option(help: ArgumentHelp("The jobs' stage.", valueName: "stage"))
    var stage = "build"

    @Option(help: ArgumentHelp("Promote each job's image to this channel once built (kiln build --promote).", valueName: "channel"))
    var promote: String?

    func run() async throws {
        let (set, graph) = try templates.load(store: try store.openIfPresent())
        if let promote { try Catalog.checkChannelName(promote) }
        // --var values are written into the pipeline in clear: a sensitive one belongs in a
        // masked CI/CD variable (KILN_VAR_NAME) instead.
        let overrides = try templates.overrides()
        let sensitive = Set(set.templates.flatMap { $0.variables.filter(\.sensitive).map(\.name) })
        for name in overrides.keys.sorted() where sensitive.contains(name) {
            throw KilnError(
                .invalidInput,
                "variable '\(name)' is sensitive: set it as a masked CI/CD variable KILN_VAR_\(name) instead of writing it into the pipeline"
            )
        }
        var options = GitLabPipeline.Options(directory: templates.path)
        options.kiln = kiln
        options.tags = tag
        options.image = image
        options.stage = stage
        options.promote = promote
        options.buildArguments = overrides.keys.sorted().flatMap { ["--var", "\($0)=\(overrides[$0]!.value)"] }
        print(try GitLabPipeline.yaml(for: graph, options: options), terminator: "")
    }
}
