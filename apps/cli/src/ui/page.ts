/** The viewer's one HTML page: the layout and styles; `app.js` draws every view into it. */
const STYLE = `
:root { --fg:#1d232b; --dim:#6a7380; --line:#d9dee5; --bg:#f6f7f9; --card:#fff; --accent:#2563eb; --bad:#c2410c; --good:#15803d; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:16px; align-items:center; padding:8px 16px; background:#111827; color:#fff; }
header b { font-size:15px; }
header nav a { color:#cbd5e1; margin-right:12px; text-decoration:none; }
header nav a.on { color:#fff; border-bottom:2px solid #60a5fa; }
header .backend { margin-left:auto; color:#94a3b8; font-size:12px; }
main { padding:16px; }
h2 { font-size:16px; margin:0 0 12px; }
h3 { font-size:14px; margin:16px 0 8px; }
a { color:var(--accent); }
.dim { color:var(--dim); }
.bar { display:flex; gap:8px; align-items:center; flex-wrap:wrap; margin-bottom:12px; }
input, select, button { font:inherit; padding:4px 8px; border:1px solid var(--line); border-radius:4px; background:#fff; }
button { cursor:pointer; }
button:disabled { opacity:.5; cursor:default; }
table { border-collapse:collapse; background:var(--card); }
th, td { border:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:#eef1f5; font-weight:600; }
td.num { text-align:right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(132px, 1fr)); gap:8px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:6px; font-size:12px; overflow:hidden; }
.card img { width:100%; aspect-ratio:1; object-fit:contain; image-rendering:pixelated; background:#000; display:block; border-radius:3px; }
.card a.open { text-decoration:none; color:inherit; display:block; }
.kv { display:grid; grid-template-columns:auto 1fr; gap:0 6px; }
.kv .k { color:var(--dim); }
.chip { display:inline-block; padding:0 6px; border-radius:9px; background:#e5e7eb; margin:1px; }
.chip.bad { background:#fed7aa; color:#7c2d12; }
.chip.good { background:#bbf7d0; color:#14532d; }
.split { display:grid; grid-template-columns:minmax(320px, 1fr) minmax(320px, 1fr); gap:16px; align-items:start; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:12px; overflow:auto; }
.heat td.cell { width:56px; height:40px; text-align:center; cursor:pointer; font-variant-numeric: tabular-nums; }
.heat td.cell:hover { outline:2px solid var(--accent); }
.heat th.row { text-align:right; white-space:nowrap; }
.heat th.col { writing-mode: vertical-rl; transform: rotate(180deg); white-space:nowrap; font-weight:500; }
.error { background:#fef2f2; border:1px solid #fecaca; color:#991b1b; padding:8px 12px; border-radius:6px; }
svg text { font: 11px system-ui, sans-serif; }
svg .node { cursor:pointer; }
.vec { max-width:100%; overflow-wrap:anywhere; }
`

export const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DreamDB viewer</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <b>DreamDB</b>
  <nav id="nav">
    <a href="#/refs" data-view="refs">Refs &amp; history</a>
    <a href="#/records" data-view="records">Records</a>
    <a href="#/compare" data-view="compare">Compare</a>
    <a href="#/inspect" data-view="inspect">Inspect &amp; diff</a>
  </nav>
  <span class="backend" id="backend"></span>
</header>
<main id="main"><p class="dim">Loading…</p></main>
<script type="module" src="/app.js"></script>
</body>
</html>
`
