import KilnCore
import KilnModel
import KilnTemplates

/// The images of a template set as a forest: each layer points at its parent family.
public struct ImageGraph: Sendable {
    /// Every template, parents before children; ties keep the file order so plans are stable.
    public let order: [Template]
    /// Parent families that no template of the set defines: they must come from the catalog.
    public let externalParents: Set<String>

    /// - Parameter knownFamilies: families the catalog already has images of; a template may
    ///   build on them without their template being in the set.
    /// - Throws: ``ValidationFailure`` naming unknown parents and printing each cycle.
    public init(_ set: TemplateSet, knownFamilies: Set<String> = []) throws {
        let analysis = Self.analyse(set.templates, knownFamilies: knownFamilies, reportUnknownParents: true)
        if !analysis.diagnostics.isEmpty { throw ValidationFailure(analysis.diagnostics) }
        self.order = analysis.order
        self.externalParents = analysis.external
    }

    /// The graph's own problems (unknown parents, cycles) of templates that may have other
    /// errors, so that `kiln validate` reports them in the same run as those.
    /// - Parameter reportUnknownParents: false when some file's family could not be read: the
    ///   parent may be that file's.
    public static func problems(
        of templates: [Template], knownFamilies: Set<String>, reportUnknownParents: Bool
    ) -> [Diagnostic] {
        analyse(templates, knownFamilies: knownFamilies, reportUnknownParents: reportUnknownParents).diagnostics
    }

    private static func analyse(
        _ templates: [Template], knownFamilies: Set<String>, reportUnknownParents: Bool
    ) -> (order: [Template], external: Set<String>, diagnostics: [Diagnostic]) {
        let byFamily = Dictionary(templates.map { ($0.family, $0) }, uniquingKeysWith: { first, _ in first })
        var diagnostics: [Diagnostic] = []
        var external: Set<String> = []
        for template in templates {
            guard let parent = template.parentFamily, byFamily[parent] == nil else { continue }
            if knownFamilies.contains(parent) {
                external.insert(parent)
            } else if reportUnknownParents {
                let defined = byFamily.keys.sorted().joined(separator: ", ")
                diagnostics.append(
                    template.sourceLocation.diagnostic(
                        "unknown parent family '\(parent)': no template defines it (defined here: \(defined)) and the catalog has no image of it"
                    ))
            }
        }
        // Depth-first with three colours: reaching a grey node again closes a cycle.
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var order: [Template] = []
        var reported: Set<String> = []
        func visit(_ template: Template, path: [String]) {
            switch marks[template.family] {
            case .done: return
            case .visiting:
                let start = path.firstIndex(of: template.family) ?? 0
                let cycle = Array(path[start...]) + [template.family]
                if reported.insert(cycle.dropLast().sorted().joined(separator: ",")).inserted {
                    diagnostics.append(
                        template.sourceLocation.diagnostic("cycle in the image graph: \(cycle.joined(separator: " -> "))"))
                }
                return
            case nil:
                marks[template.family] = .visiting
                if let parent = template.parentFamily, let parentTemplate = byFamily[parent] {
                    visit(parentTemplate, path: path + [template.family])
                }
                marks[template.family] = .done
                order.append(template)
            }
        }
        for template in templates { visit(template, path: []) }
        return (order, external, diagnostics)
    }

    public func template(_ family: String) -> Template? {
        order.first { $0.family == family }
    }

    /// The family's template and every template that builds on it, in build order.
    public func descendants(of family: String) -> [Template] {
        var included: Set<String> = [family]
        var result: [Template] = []
        for template in order {
            if template.family == family || template.parentFamily.map(included.contains) == true {
                included.insert(template.family)
                result.append(template)
            }
        }
        return result
    }
}
