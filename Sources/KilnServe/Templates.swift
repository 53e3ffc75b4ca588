/// The pages' Mustache templates, compiled into the binary: `make install` copies one file,
/// and a resource bundle beside it would be lost. `{{…}}` escapes for HTML; `{{{…}}}` appears
/// only for markup kiln made itself (the lineage SVG, the highlighted log).
enum Templates {
    static let all: [String: String] = [
        "layout": layout, "error": error, "families": families, "family": family, "image": image, "lineage": lineage,
        "channels": channels, "builds": builds, "build": build, "pager": pager,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{$title}}kiln{{/title}} · kiln</title>
        <link rel="stylesheet" href="/static/kiln.css">
        {{$head}}{{/head}}
        </head>
        <body>
        <header class="top">
          <a class="brand" href="/">kiln</a>
          <nav><a href="/">Families</a> <a href="/lineage">Lineage</a> <a href="/builds">Builds</a> <a href="/api/openapi.json">API</a></nav>
        </header>
        <main>
        {{#unreadable}}<div class="notice unreadable"><p>{{count}} catalog {{rows}} could not be read and {{are}} left out here:</p>
        <ul>{{#messages}}<li>{{.}}</li>{{/messages}}</ul></div>{{/unreadable}}
        {{$body}}{{/body}}
        </main>
        </body>
        </html>
        """

    static let error = """
        {{<layout}}{{$title}}{{title}}{{/title}}{{$body}}
        <h1>{{title}}</h1>
        <p class="message">{{message}}</p>
        {{#signIn}}
        <form method="post" action="/login" class="sign-in">
          <label>Token <input type="password" name="token" autocomplete="current-password" required></label>
          <button type="submit">Sign in</button>
        </form>
        {{/signIn}}
        {{^signIn}}<p><a href="/">All families</a></p>{{/signIn}}
        {{/body}}{{/layout}}
        """

    static let families = """
        {{<layout}}{{$title}}Families{{/title}}{{$body}}
        <h1>Image families</h1>
        <p class="summary">{{familyCount}} families, {{imageCount}} images in <code>{{catalog}}</code>. <a href="/lineage">Lineage graph</a></p>
        {{#hasFamilies}}
        <table class="families">
        <thead><tr><th>Family</th><th>Head</th><th>Built on</th><th>States</th><th>Channels</th><th>Newest</th></tr></thead>
        <tbody>
        {{#families}}
        <tr>
          <td><a href="/families/{{family}}">{{family}}</a></td>
          <td>{{#head}}<a href="/images/{{head}}">{{head}}</a>{{/head}}{{^head}}<span class="none">no READY image</span>{{/head}}</td>
          <td>{{#parentFamily}}<a href="/families/{{parentFamily}}">{{parentFamily}}</a>{{/parentFamily}}{{^parentFamily}}base{{/parentFamily}}</td>
          <td>{{#counts}}<span class="state state-{{css}}">{{state}} {{count}}</span> {{/counts}}</td>
          <td>{{#channels}}<a class="channel" href="/images/{{image}}">{{channel}} → {{image}}</a> {{/channels}}</td>
          <td>{{newest}}</td>
        </tr>
        {{/families}}
        </tbody>
        </table>
        {{/hasFamilies}}
        {{^hasFamilies}}<p class="none">The catalog has no images yet: <code>kiln build DIR</code> makes some.</p>{{/hasFamilies}}
        {{/body}}{{/layout}}
        """

    static let family = """
        {{<layout}}{{$title}}{{family}}{{/title}}{{$body}}
        <h1>{{family}}</h1>
        <p class="summary">{{total}} images{{#head}}; head <a href="/images/{{head}}">{{head}}</a>{{/head}}{{#parentFamily}}; built on <a href="/families/{{parentFamily}}">{{parentFamily}}</a>{{/parentFamily}}. <a href="/families/{{family}}/channels">Channels and their history</a></p>
        <p class="filters">Show: <a href="/families/{{family}}"{{^state}} class="current"{{/state}}>all</a>
        {{#states}} <a href="/families/{{family}}?state={{state}}"{{#current}} class="current"{{/current}}>{{state}} ({{count}})</a>{{/states}}</p>
        <table class="versions">
        <thead><tr><th>Image</th><th>State</th><th>Created</th><th>Parent</th><th>Replacement</th><th>Obsolete on</th><th>Delete on</th><th>Tests</th></tr></thead>
        <tbody>
        {{#images}}
        <tr class="state-{{css}}{{#stale}} stale{{/stale}}">
          <td><a href="/images/{{name}}">{{name}}</a>{{#channels}} <span class="channel">{{.}}</span>{{/channels}}</td>
          <td><span class="state state-{{css}}">{{state}}</span>{{#stale}} <span class="stale-mark" title="{{stale}}">stale</span>{{/stale}}</td>
          <td>{{created}}</td>
          <td>{{#parent}}<a href="/images/{{parent}}">{{parent}}</a>{{/parent}}</td>
          <td>{{#replacement}}<a href="/images/{{replacement}}">{{replacement}}</a>{{/replacement}}</td>
          <td>{{obsoleteOn}}</td><td>{{deleteOn}}</td><td>{{tests}}</td>
        </tr>
        {{/images}}
        </tbody>
        </table>
        {{> pager}}
        {{/body}}{{/layout}}
        """

    static let pager = """
        <nav class="pager"><span>{{shown}}</span>
        {{#previous}}<a rel="prev" href="{{previous}}">← newer</a>{{/previous}}
        {{#next}}<a rel="next" href="{{next}}">older →</a>{{/next}}</nav>
        """

    static let image = """
        {{<layout}}{{$title}}{{name}}{{/title}}{{$body}}
        <h1>{{name}} <span class="state state-{{css}}">{{state}}</span>{{#stale}} <span class="stale-mark">stale</span>{{/stale}}</h1>
        {{#staleBecause}}<p class="warning">Stale: {{staleBecause}}.</p>{{/staleBecause}}
        {{#description}}<p>{{description}}</p>{{/description}}
        <dl class="facts">
          <dt>Family</dt><dd><a href="/families/{{family}}">{{family}}</a> {{version}}</dd>
          <dt>Parent chain</dt><dd>{{#chain}}<a href="/images/{{name}}">{{name}}</a>{{#more}} ← {{/more}}{{/chain}}{{^chain}}a base image ({{source}}){{/chain}}</dd>
          <dt>Children</dt><dd>{{#children}}<a href="/images/{{.}}">{{.}}</a> {{/children}}{{^children}}none{{/children}}</dd>
          <dt>Digest</dt><dd><code>sha256:{{digest}}</code>, {{size}}</dd>
          <dt>Provider</dt><dd>{{provider}}</dd>
          <dt>Created</dt><dd>{{created}}</dd>
          {{#replacement}}<dt>Replacement</dt><dd><a href="/images/{{replacement}}">{{replacement}}</a></dd>{{/replacement}}
          {{#obsoleteOn}}<dt>Obsolete on</dt><dd>{{obsoleteOn}}</dd>{{/obsoleteOn}}
          {{#deleteOn}}<dt>Delete on</dt><dd>{{deleteOn}}</dd>{{/deleteOn}}
          <dt>Origin</dt><dd>{{#origin}}{{origin}}{{/origin}}{{^origin}}not recorded{{/origin}}{{#jobURL}} · <a href="{{jobURL}}" rel="noreferrer">CI job</a>{{/jobURL}}</dd>
          <dt>Build</dt><dd><a href="/builds/{{buildID}}">{{buildID}}</a> (log)</dd>
          <dt>Signature</dt><dd class="signature-{{signatureStatus}}">{{signatureStatus}}{{#signatureKey}} by key {{signatureKey}}{{/signatureKey}}{{#signatureProblems}}<br>{{.}}{{/signatureProblems}}</dd>
          <dt>Tests</dt><dd>{{#tests}}<a href="/builds/{{run}}">{{run}}</a>: {{status}} ({{passed}} passed, {{failed}} failed, {{skipped}} skipped){{#failedStep}} at {{failedStep}}{{/failedStep}}<br>{{/tests}}{{^tests}}none{{/tests}}</dd>
        </dl>
        <h2>Labels</h2>
        {{#labels}}<span class="label">{{key}}={{value}}</span> {{/labels}}{{^labels}}<p class="none">none</p>{{/labels}}
        <h2>Build key</h2>
        <p>{{#buildKey}}<code>sha256:{{buildKey}}</code>{{/buildKey}}{{^buildKey}}none (built before build keys){{/buildKey}}</p>
        {{#rebuild}}<p class="rebuild">Rebuilt after <a href="/images/{{previous}}">{{previous}}</a> because {{#hasChanges}}these inputs changed: {{#changed}}<code>{{.}}</code> {{/changed}}{{/hasChanges}}{{^hasChanges}}it was forced (the inputs are the same){{/hasChanges}}.</p>{{/rebuild}}
        {{^rebuild}}<p class="rebuild">The first image of its family.</p>{{/rebuild}}
        <table class="inputs"><thead><tr><th>Input</th><th>Value</th></tr></thead><tbody>
        {{#inputs}}<tr{{#changed}} class="changed"{{/changed}}><td><code>{{key}}</code></td><td><code>{{value}}</code></td></tr>{{/inputs}}
        </tbody></table>
        <h2>Lifecycle</h2>
        <table class="events"><thead><tr><th>When</th><th>From</th><th>To</th><th>By</th><th>Why</th></tr></thead><tbody>
        {{#events}}<tr><td>{{at}}</td><td>{{from}}</td><td>{{to}}</td><td>{{actor}}</td><td>{{reason}}</td></tr>{{/events}}
        </tbody></table>
        <h2 id="packages">Packages ({{packageTotal}})</h2>
        <form method="get" action="/images/{{name}}#packages" class="search"><input type="search" name="q" value="{{query}}" placeholder="package or source name"> <button type="submit">Search</button></form>
        <table class="packages"><thead><tr><th>Package</th><th>Version</th><th>Architecture</th><th>Source</th></tr></thead><tbody>
        {{#packages}}<tr><td>{{name}}</td><td>{{version}}</td><td>{{architecture}}</td><td>{{source}} {{sourceVersion}}</td></tr>{{/packages}}
        </tbody></table>
        {{> pager}}
        <h2>Provenance</h2>
        {{#provenance}}<pre class="provenance">{{provenance}}</pre>{{/provenance}}{{^provenance}}<p class="none">no provenance record</p>{{/provenance}}
        {{/body}}{{/layout}}
        """

    static let lineage = """
        {{<layout}}{{$title}}Lineage{{/title}}{{$body}}
        <h1>Lineage</h1>
        <p class="summary">{{nodeCount}} images in {{layerCount}} layers, {{staleCount}} stale (built on an image that is no longer its family's head).
        {{#all}}<a href="/lineage">Live images only</a>{{/all}}{{^all}}<a href="/lineage?all=true">Include OBSOLETE and DELETED</a>{{/all}} · <a href="/lineage.svg{{#all}}?all=true{{/all}}">SVG</a></p>
        {{#truncated}}<p class="warning">Only the newest {{nodeCount}} images and their ancestors are drawn.</p>{{/truncated}}
        <p class="legend"><span class="state state-ready">READY</span> <span class="state state-testing">TESTING</span> <span class="state state-failed">FAILED</span> <span class="state state-deprecated">DEPRECATED</span> <span class="state state-obsolete">OBSOLETE</span> <span class="stale-mark">stale</span> a thick border marks a family's head</p>
        <div class="graph">{{{svg}}}</div>
        {{/body}}{{/layout}}
        """

    static let channels = """
        {{<layout}}{{$title}}{{family}} channels{{/title}}{{$body}}
        <h1><a href="/families/{{family}}">{{family}}</a> channels</h1>
        <table class="channels"><thead><tr><th>Channel</th><th>Image now</th></tr></thead><tbody>
        {{#current}}<tr><td>{{channel}}</td><td><a href="/images/{{image}}">{{image}}</a></td></tr>{{/current}}
        </tbody></table>
        {{^current}}<p class="none">No channels: <code>kiln promote {{family}} CHANNEL</code> makes one.</p>{{/current}}
        <h2>History</h2>
        <table class="history"><thead><tr><th>When</th><th>Channel</th><th>Pointed at</th><th>By</th></tr></thead><tbody>
        {{#history}}<tr><td>{{at}}</td><td>{{name}}</td><td><a href="/images/{{image}}">{{image}}</a></td><td>{{actor}}</td></tr>{{/history}}
        </tbody></table>
        {{/body}}{{/layout}}
        """

    static let builds = """
        {{<layout}}{{$title}}Builds{{/title}}{{$body}}
        <h1>Builds{{#family}} of <a href="/families/{{family}}">{{family}}</a>{{/family}}</h1>
        <table class="builds"><thead><tr><th>Build</th><th>Family</th><th>Status</th><th>Failed step</th><th>Image</th><th>Started</th></tr></thead><tbody>
        {{#builds}}<tr class="status-{{status}}"><td><a href="/builds/{{id}}">{{id}}</a></td><td><a href="/builds?family={{family}}">{{family}}</a></td><td><span class="status status-{{status}}">{{status}}</span></td><td>{{failedStep}}</td><td>{{#image}}<a href="/images/{{image}}">{{image}}</a>{{/image}}</td><td>{{started}}</td></tr>{{/builds}}
        </tbody></table>
        {{> pager}}
        {{/body}}{{/layout}}
        """

    static let build = """
        {{<layout}}{{$title}}{{id}}{{/title}}{{$head}}{{#running}}<script src="/static/tail.js" defer></script>{{/running}}{{/head}}{{$body}}
        <h1>Build {{id}} <span class="status status-{{status}}">{{status}}</span></h1>
        <dl class="facts">
          <dt>Family</dt><dd><a href="/families/{{family}}">{{family}}</a></dd>
          {{#image}}<dt>Image</dt><dd><a href="/images/{{image}}">{{image}}</a></dd>{{/image}}
          <dt>Started</dt><dd>{{started}}</dd>
          {{#finished}}<dt>Finished</dt><dd>{{finished}}</dd>{{/finished}}
          {{#host}}<dt>Host</dt><dd>{{host}}</dd>{{/host}}
          {{#failedStep}}<dt>Failed at</dt><dd><a href="#failed">{{failedStep}}</a></dd>{{/failedStep}}
          {{#message}}<dt>Message</dt><dd class="message">{{message}}</dd>{{/message}}
        </dl>
        <h2>Log</h2>
        {{#running}}<p class="live">Running: new lines appear as the build writes them.</p>{{/running}}
        {{^hasLog}}<p class="none">{{noLog}}</p>{{/hasLog}}
        <pre class="log" id="log"{{#running}} data-events="/builds/{{id}}/events" data-lines="{{lineCount}}"{{/running}}>{{{log}}}</pre>
        {{/body}}{{/layout}}
        """

    static let css = """
        body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2125; background: #fafbfc; }
        header.top { display: flex; gap: 2em; align-items: baseline; padding: .6em 1.5em; background: #1d2125; color: #fff; }
        header.top a { color: #fff; text-decoration: none; margin-right: 1.2em; }
        header.top .brand { font-weight: 700; font-size: 1.2em; }
        main { padding: 1em 1.5em 3em; }
        .notice { border-left: 4px solid #c27c0e; background: #fff6e5; padding: .4em 1em; margin-bottom: 1em; }
        .notice p { margin: .2em 0; } .notice ul { margin: .2em 0; }
        h1 { font-size: 1.5em; margin: .3em 0; } h2 { font-size: 1.15em; margin-top: 1.6em; }
        a { color: #1c64b8; }
        table { border-collapse: collapse; margin: .5em 0; background: #fff; }
        th, td { text-align: left; padding: .3em .7em; border-bottom: 1px solid #e3e6e8; vertical-align: top; }
        th { background: #f1f3f5; font-weight: 600; }
        code { font-size: .92em; word-break: break-all; }
        .state, .status, .stale-mark, .label, .channel { display: inline-block; padding: 0 .45em; border-radius: 3px; font-size: .85em; border: 1px solid; }
        .state-ready, .status-succeeded { background: #e6f4ea; border-color: #2b8a3e; color: #1e6b30; }
        .state-testing, .status-running { background: #e7f0fb; border-color: #1c64b8; color: #174f91; }
        .state-failed, .status-failed, .status-cancelled { background: #fdecea; border-color: #c92a2a; color: #a61e1e; }
        .state-deprecated { background: #fff4e0; border-color: #c77700; color: #8f5600; }
        .state-obsolete, .state-deleted { background: #f1f1f1; border-color: #868e96; color: #555; }
        .stale-mark { background: #fff0e6; border-color: #d9480f; color: #b03a0c; border-style: dashed; }
        tr.stale td:first-child { border-left: 3px dashed #d9480f; }
        .label, .channel { background: #f1f3f5; border-color: #ced4da; color: #343a40; text-decoration: none; }
        .none { color: #6c757d; } .warning { color: #b03a0c; } .summary { color: #495057; }
        .filters a.current { font-weight: 700; text-decoration: none; color: #1d2125; }
        dl.facts { display: grid; grid-template-columns: max-content auto; gap: .25em 1.2em; }
        dl.facts dt { color: #6c757d; } dl.facts dd { margin: 0; }
        tr.changed td { background: #fff8db; }
        pre { background: #fff; border: 1px solid #e3e6e8; padding: .7em; overflow-x: auto; font-size: 12.5px; }
        pre.log .failed { background: #fdecea; display: block; }
        pre.log .marker { font-weight: 700; }
        .graph { overflow: auto; background: #fff; border: 1px solid #e3e6e8; padding: .5em; }
        .pager { margin: .8em 0; display: flex; gap: 1.2em; }
        form.sign-in input, form.search input { padding: .3em; }
        """

    /// The live tail: appends what the server sends. The only script kiln serves.
    static let tailScript = """
        "use strict";
        const log = document.getElementById("log");
        if (log && log.dataset.events) {
          const source = new EventSource(log.dataset.events + "?from=" + (log.dataset.lines || "0"));
          source.addEventListener("line", (event) => {
            const line = document.createElement("span");
            line.textContent = event.data + "\\n";
            log.appendChild(line);
            line.scrollIntoView({ block: "nearest" });
          });
          // The build ended: its log is archived; the page shows it whole, the failed step marked.
          source.addEventListener("end", () => { source.close(); window.location.reload(); });
        }
        """
}
