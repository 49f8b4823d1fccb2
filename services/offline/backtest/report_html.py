"""The backtest's ``report.html``: one self-contained page a trader can read.

No network: the findings are embedded as JSON, and the page's charts are drawn when it opens by TradingView's
Lightweight Charts v5 — the dashboard's library, located through :func:`shared.charts.lightweight_charts_script` and
inlined, so the page stays one file that works offline (a Content-Security-Policy meta tag forbids any fetch). The
charts' data is exposed as ``window.reportCharts`` (``[{name, points, markers}]``), which the browser test checks.
Tables are rendered here, so the numbers read even with scripts off. Times are New York exchange time, labelled ET;
hovering a time shown as text gives it in UTC. The page's script and template are kept as served, long lines and all
(``noqa: E501`` on those strings): wrapping them would change the page's bytes.
"""

from __future__ import annotations

import html
import json

import msgspec

from services.offline.backtest.heart import shown, shown_interval
from services.offline.backtest.models import (
    CONTEXTS,
    BacktestReport,
    ChanceComparison,
    Interval,
    SessionChart,
    SuccessMetrics,
)
from shared.charts import lightweight_charts_script, lightweight_charts_version

KIND_NAMES = {
    "exit": "exit recommendation",
    "large_seller/tape": "large seller (tape)",
    "large_seller/book": "large seller (book)",
    "red_burst": "red burst",
}
KIND_COLOURS = {
    "exit": "#c0142a",
    "large_seller/tape": "#e07b00",
    "large_seller/book": "#8a5cc7",
    "red_burst": "#d4267e",
    "base": "#7d8a99",
}
# nothing may be fetched: inline scripts and styles only, images only as data: URIs
CONTENT_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2733;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccd;padding:3px 8px;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}.note{color:#556;max-width:900px}
.good{color:#0a6b2a}.bad{color:#a01818}.grid{display:flex;flex-wrap:wrap}.legend span{margin-right:14px}
.chart-box{margin:6px 10px 10px 0}.chart-title{font-weight:bold;font-size:13px}
.chart{border:1px solid #dde;position:relative}.chart-legend{font-size:12px;color:#445;min-height:17px}
"""

_SCRIPT = r"""
const data = JSON.parse(document.getElementById('report-data').textContent);
const LWC = LightweightCharts, COLOURS = data.colours, charts = [];
window.reportCharts = charts;
const ET = {timeZone: 'America/New_York', hourCycle: 'h23', hour: '2-digit', minute: '2-digit'};
function et(t, seconds){return new Date(t * 1000).toLocaleTimeString('en-US', seconds ? {...ET, second: '2-digit'} : ET);}
function utc(t){return new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';}
function horizon(s){return s < 60 ? s + ' s' : (s / 60) + ' min';}
function percent(v){return v.toFixed(1) + ' %';}
function box(parent, name, title, width, height){
  const outer = document.createElement('div'); outer.className = 'chart-box';
  const head = document.createElement('div'); head.className = 'chart-title'; head.textContent = title;
  const holder = document.createElement('div'); holder.className = 'chart'; holder.dataset.chart = name;
  holder.style.width = width + 'px'; holder.style.height = height + 'px';
  const legend = document.createElement('div'); legend.className = 'chart-legend'; legend.style.maxWidth = width + 'px';
  outer.append(head, holder, legend); parent.appendChild(outer);
  return {holder, legend};
}
function look(width, height, more){
  return {width, height, layout: {background: {type: 'solid', color: '#fafbff'}, textColor: '#1d2733', fontSize: 11},
    grid: {vertLines: {color: '#eef0f6'}, horzLines: {color: '#eef0f6'}}, ...more};
}
function nearest(points, t){  // the time of the point nearest t (points sorted by time): markers sit on the line
  let lo = 0, hi = points.length - 1;
  while (lo < hi){const mid = (lo + hi) >> 1; if (points[mid].time < t) lo = mid + 1; else hi = mid;}
  return lo > 0 && t - points[lo - 1].time <= points[lo].time - t ? points[lo - 1].time : points[lo].time;
}
// 1. each session's mid with its alerts (arrows) and exits (circles), on a New York time axis
const sessions = document.getElementById('sessions');
for (const s of data.sessions){
  const name = 'session ' + s.symbol + ' ' + s.day;
  const {holder, legend} = box(sessions, name, `${s.symbol} ${s.day} — mid, New York time (ET)`, 570, 250);
  const chart = LWC.createChart(holder, look(570, 250, {
    localization: {timeFormatter: t => et(t, true) + ' ET'},
    timeScale: {timeVisible: true, rightOffset: 6, tickMarkFormatter: t => et(t, false) + ' ET'}}));
  const line = chart.addSeries(LWC.LineSeries, {color: '#2b4c7e', lineWidth: 1, priceLineVisible: false, lastValueVisible: false});
  const points = s.points.map(([second, mid]) => ({time: s.open + second, value: mid}));
  line.setData(points);
  const markers = points.length ? s.marks.map(m => ({time: nearest(points, s.open + m.second), at: s.open + m.second, kind: m.kind, id: m.id})) : [];
  markers.sort((a, b) => a.time - b.time);
  const markersApi = LWC.createSeriesMarkers(line, markers.map(m => m.kind === 'exit'
    ? {time: m.time, position: 'belowBar', shape: 'circle', color: COLOURS.exit, size: 1.4}
    : {time: m.time, position: 'aboveBar', shape: 'arrowDown', color: COLOURS[m.kind] || '#444'}));
  chart.timeScale().fitContent();
  const alerts = markers.filter(m => m.kind !== 'exit').length, exits = markers.length - alerts;
  const summary = `${alerts} alert${alerts === 1 ? '' : 's'}, ${exits} exit${exits === 1 ? '' : 's'}`;
  legend.textContent = summary;
  chart.subscribeCrosshairMove(p => {
    const point = p.time === undefined ? undefined : p.seriesData.get(line);
    if (point === undefined){legend.textContent = summary; legend.removeAttribute('title'); return;}
    const here = markers.filter(m => m.time === p.time).map(m => data.names[m.kind] || m.kind);
    legend.textContent = `${et(p.time, true)} ET · mid ${point.value.toFixed(2)}` + (here.length ? ' · ' + here.join(', ') : '');
    legend.title = utc(p.time);
  });
  charts.push({name, points, markers, series: line, markersApi});
}
// 2. forward-return distributions at the chosen horizon, signals (bars) vs base (grey line): a numeric bps axis
const dist = document.getElementById('distributions');
for (const kind of Object.keys(data.distributions).filter(k => k !== 'base')){
  const signal = data.distributions[kind], base = data.distributions.base || [], all = signal.concat(base);
  const lo = Math.floor(Math.max(-60, Math.min(...all))), hi = Math.ceil(Math.min(60, Math.max(...all))), bins = 24;
  const width = (hi - lo) / bins || 1, centre = i => Math.round((lo + (i + 0.5) * width) * 100) / 100;
  function shares(values){
    const counts = new Array(bins).fill(0);
    for (const r of values) counts[Math.min(bins - 1, Math.max(0, Math.floor((r - lo) / width)))]++;
    return counts.map((n, i) => ({time: centre(i), value: 100 * n / (values.length || 1)}));
  }
  const name = 'distribution ' + kind;
  const {holder, legend} = box(dist, name, `${data.names[kind] || kind}: ${signal.length} vs base ${base.length}`, 380, 210);
  legend.textContent = 'share of each, % per bin; bps of the mid (values beyond ±60 bps in the end bins)';
  const chart = LWC.createOptionsChart(holder, look(380, 210, {
    localization: {precision: 1, priceFormatter: percent, timeFormatter: x => x.toFixed(1) + ' bps'},
    timeScale: {tickMarkFormatter: x => x.toFixed(0)}}));
  const bars = chart.addSeries(LWC.HistogramSeries, {color: COLOURS[kind] || '#444', priceLineVisible: false, lastValueVisible: false, priceFormat: {type: 'custom', formatter: percent}});
  const grey = chart.addSeries(LWC.LineSeries, {color: COLOURS.base, lineWidth: 2, priceLineVisible: false, lastValueVisible: false, priceFormat: {type: 'custom', formatter: percent}});
  const points = shares(signal), basePoints = shares(base);
  bars.setData(points); grey.setData(basePoints);
  chart.timeScale().fitContent();
  charts.push({name, points, markers: [], base: basePoints, series: bars});
}
// 3. hit rate vs base rate with their intervals, by horizon (a numeric axis in seconds), one chart per kind
const lift = document.getElementById('lift');
for (const [kind, byHorizon] of Object.entries(data.versus)){
  const rows = Object.entries(byHorizon).map(([h, r]) => [Number(h), r]).filter(([, r]) => r.signals).sort((a, b) => a[0] - b[0]);
  if (!rows.length) continue;
  const name = 'lift ' + kind, colour = COLOURS[kind] || '#444';
  const {holder, legend} = box(lift, name, `${data.names[kind] || kind} (n=${rows.map(([h, r]) => r.signals).join('/')})`, 380, 210);
  legend.textContent = `fall ≥ ${data.fall_bps} bps within the horizon, % — dashed: 95 % Wilson; grey: base`;
  // a time scale whose 'times' are the horizons in seconds, labelled as such (the axis is spaced by point, not to scale)
  const chart = LWC.createChart(holder, look(380, 210, {
    localization: {priceFormatter: percent, timeFormatter: horizon}, timeScale: {tickMarkFormatter: horizon}}));
  const series = (key, index, colour, options) => {
    const s = chart.addSeries(LWC.LineSeries, {color: colour, priceLineVisible: false, lastValueVisible: false, ...options});
    const points = rows.map(([h, r]) => {const v = index === null ? r[key] : r[key][index]; return v === null ? {time: h} : {time: h, value: 100 * v};});
    s.setData(points); return [s, points];
  };
  const [hits, points] = series('hit_rate', null, colour, {lineWidth: 2, pointMarkersVisible: true});
  for (const i of [0, 1]) series('hit_rate_ci95', i, colour, {lineWidth: 1, lineStyle: 2});
  const [, basePoints] = series('base_hit_rate', null, COLOURS.base, {lineWidth: 2, pointMarkersVisible: true});
  for (const i of [0, 1]) series('base_hit_rate_ci95', i, COLOURS.base, {lineWidth: 1, lineStyle: 1});
  chart.timeScale().fitContent();
  charts.push({name, points, markers: [], base: basePoints, series: hits});
}
// 4. alerts (top pane) and exits (lower pane) per symbol and day, against the 5-15 target and the 50 guardrail
const perDay = document.getElementById('per-day');
{
  const entries = Object.entries(data.per_day), width = Math.min(1150, Math.max(380, 80 + entries.length * 60));
  const label = i => (entries[i - 1] || [''])[0];
  const {holder, legend} = box(perDay, 'per day', 'alerts and exits per symbol and day (New York days)', width, 300);
  legend.textContent = 'green lines: the 5–15 target; red dashed: the 50 guardrail';
  // a time scale whose 'times' are the rows' numbers 1, 2, …, labelled with their symbol and day
  const chart = LWC.createChart(holder, look(width, 300, {
    localization: {timeFormatter: label}, timeScale: {tickMarkFormatter: i => label(i).replace(/ \d\d(\d\d-)/, ' $1')}}));
  const top = Math.max(60, ...entries.map(([, v]) => v.alerts));
  const counts = {priceLineVisible: false, lastValueVisible: false, priceFormat: {type: 'price', precision: 0, minMove: 1}};
  const alerts = chart.addSeries(LWC.HistogramSeries, {...counts, color: COLOURS['large_seller/tape'],
    autoscaleInfoProvider: () => ({priceRange: {minValue: 0, maxValue: top}})});
  const exits = chart.addSeries(LWC.HistogramSeries, {...counts, color: COLOURS.exit}, 1);
  const points = entries.map(([, v], i) => ({time: i + 1, value: v.alerts}));
  alerts.setData(points); exits.setData(entries.map(([, v], i) => ({time: i + 1, value: v.exits})));
  for (const [price, colour, style, title] of [[5, '#0a6b2a', 0, '5'], [15, '#0a6b2a', 0, '15'], [50, '#a01818', 2, '50: guardrail']])
    alerts.createPriceLine({price, color: colour, lineStyle: style, lineWidth: 1, axisLabelVisible: true, title});
  chart.panes()[1].setHeight(80);
  chart.timeScale().fitContent();
  charts.push({name: 'per day', points, markers: [], series: alerts, exits: entries.map(([key, v]) => ({key, exits: v.exits}))});
}
document.body.dataset.chartLibrary = LWC.version();
document.body.dataset.chartsDrawn = charts.length;
"""  # noqa: E501  (the page's script, byte for byte as served)


def _library() -> str:
    """The charting library's standalone script, to inline (checked not to close the ``<script>`` it sits in)."""
    script = lightweight_charts_script().read_text(encoding="utf-8")
    if "</script" in script.lower():
        raise ValueError(f"{lightweight_charts_script()} contains '</script': it cannot be inlined")
    return script


def _cell(value: object, suffix: str = "") -> str:
    return (
        "–" if value is None else f"{value:g}{suffix}" if isinstance(value, (int, float)) else html.escape(str(value))
    )


def _interval(pair: Interval, suffix: str = "") -> str:
    return "–" if not pair or pair[0] is None else f"[{pair[0]:g}, {pair[1]:g}]{suffix}"


def success_section(metrics: SuccessMetrics | None, positions: str) -> str:
    """The success metrics' table (rendered here: it reads with scripts off), each beside chance and its target."""
    if metrics is None:
        return ""
    head = "".join(f"<th>{html.escape(context)}</th>" for context in CONTEXTS[1:])
    rows = []
    for row in metrics.table:
        tone = "" if row.met is None else " class='good'" if row.met else " class='bad'"
        cells = "".join(f"<td>{shown(row.unit, row.by_context[c])}</td>" for c in CONTEXTS[1:])
        rows.append(
            f"<tr><td>{html.escape(row.metric)}</td><td{tone}>{shown(row.unit, row.value)}</td>"
            f"<td>{shown_interval(row.unit, row.ci95)}</td><td>{shown(row.unit, row.chance)}</td>"
            f"<td>{html.escape(row.target)}</td>{cells}</tr>"
        )
    pnl = metrics.exit_pnl["all"]
    return f"""<h2 id="success-metrics">Success metrics (HEART), beside chance and the product's targets</h2>
<p class="note">Positions: {html.escape(positions)} ({metrics.positions}{"" if positions == "given" else "; none in an index"}), each with a stop
{metrics.stop_loss_pct:g} % under its entry when it has none; prices from the regular session, 09:30–16:00 ET. A drop: the mid
{metrics.drop_pct:g} % under its peak since entry; a false positive: the mid rose {metrics.rise_pct:g} % before falling as much, by the
close; saved: selling at the bid versus the mid {metrics.exit_horizon_seconds} s later. Shares carry Wilson 95 % intervals, means bootstrap
ones; each context column follows only the exits (or counts only the alerts) of that market context. Stop-loss only:
{shown("bps", pnl.stop_only_bps)} a position; following the exits too: {shown("bps", pnl.following_bps)}. Definitions:
docs/success-metrics.md.</p>
<table class="success"><tr><th>metric</th><th>all</th><th>95 %</th><th>chance</th><th>target</th>{head}</tr>
{"".join(rows)}</table>"""  # noqa: E501  (the page's text, as written)


def _chance_rows(table: dict[str, dict[str, ChanceComparison]]) -> list[str]:
    """One table row per group (its name shown as given) and horizon."""
    rows = []
    for name, by_horizon in table.items():
        for hz, r in by_horizon.items():
            tone = "good" if r.difference_ci95_bps[1] is not None and r.difference_ci95_bps[1] < 0 else ""
            rows.append(
                f"<tr><td>{html.escape(name)}</td><td>{hz} s</td><td>{r.signals}</td>"
                f"<td>{r.censored_past_close}</td>"
                f"<td>{_cell(r.mean_forward_bps)}</td><td>{_cell(r.base_mean_forward_bps)}</td>"
                f"<td class='{tone}'>{_cell(r.difference_bps)} {_interval(r.difference_ci95_bps)}</td>"
                f"<td>{_cell(r.hit_rate)} {_interval(r.hit_rate_ci95)}</td>"
                f"<td>{_cell(r.base_hit_rate)} {_interval(r.base_hit_rate_ci95)}</td><td>{_cell(r.lift)}</td>"
                f"<td>{_cell(r.lead_seconds_median)}</td></tr>"
            )
    return rows


def render_page(
    findings: BacktestReport,
    sessions: list[SessionChart],
    distributions: dict[str, list[float]],
    horizon: int,
    opens: dict[str, int],
) -> str:
    """The page for ``findings`` (from :func:`services.offline.backtest.report.report`), its charts drawn from
    ``sessions`` (placed in time by ``opens``: each ``"SYMBOL DAY"`` session's open, Unix seconds) and the
    forward-return ``distributions`` at ``horizon`` seconds."""
    versus = findings.versus_chance.by_kind
    rows = _chance_rows({KIND_NAMES.get(kind, kind): by_horizon for kind, by_horizon in versus.items()})
    context_rows = _chance_rows(findings.versus_chance.by_context)
    summary = findings.following_exits.summary
    horizon_rows = "".join(
        f"<tr><td>{hz} s</td><td>{r.exits}</td><td class='{'good' if (r.saved_net_bps_mean or 0) > 0 else 'bad'}'>"
        f"{_cell(r.saved_net_bps_mean)}</td>"
        f"<td>{_cell(r.false_positive_share)} {_interval(r.false_positive_ci95)}</td></tr>"
        for hz, r in summary.by_horizon.items()
    )
    settings = findings.settings
    payload = {
        "sessions": [
            {**msgspec.to_builtins(chart), "open": opens[f"{chart.symbol} {chart.day}"]} for chart in sessions
        ],
        "distributions": distributions,
        "versus": msgspec.to_builtins(versus),
        "per_day": msgspec.to_builtins(findings.per_day),
        "fall_bps": settings.fall_bps,
        "names": KIND_NAMES,
        "colours": KIND_COLOURS,
    }
    legend = "".join(
        f"<span style='color:{KIND_COLOURS[kind]}'>{'○' if kind == 'exit' else '▼'} {name}</span>"
        for kind, name in KIND_NAMES.items()
    )
    embedded = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">
<title>orderflow backtest</title><style>{_STYLE}</style></head>
<body>
<h1>orderflow backtest</h1>
<p class="note">{findings.events:,} events; sessions: {html.escape(", ".join(findings.sessions))}. Regular session only for
prices; every time is New York exchange time (ET). Forward returns are of the mid, in basis points (bps); the <b>base</b> is the same
return from every {settings.base_step_seconds} s of the same sessions — what a random moment did. An interval that excludes the base
is evidence; a count of hits without its base rate is not.</p>
<h2>Signals versus chance</h2>
<table><tr><th>signal</th><th>horizon</th><th>n</th><th>censored at close</th><th>mean fwd bps</th><th>base mean</th>
<th>difference [95 % bootstrap]</th><th>fall ≥ {settings.fall_bps:g} bps [Wilson 95 %]</th><th>base rate [95 %]</th><th>lift</th>
<th>median lead s</th></tr>{"".join(rows)}</table>
<h3>By market context</h3>
<p class="note">The stocks' alerts and exits by the label they carried (stock_specific: the index was not falling; market_wide:
it was, and explained the stock's move; mixed: the stock fell further than its beta explains; unknown: no fresh index data;
none: no index configured). A market sell-off's exit is scored once on each position it named. Same base as above.</p>
<table><tr><th>group</th><th>horizon</th><th>n</th><th>censored at close</th><th>mean fwd bps</th><th>base mean</th>
<th>difference [95 % bootstrap]</th><th>fall ≥ {settings.fall_bps:g} bps [Wilson 95 %]</th><th>base rate [95 %]</th><th>lift</th>
<th>median lead s</th></tr>{"".join(context_rows)}</table>
<h2>Following the exit recommendations</h2>
<p class="note">Positions: {html.escape(settings.positions)}. Each exits at the <b>bid</b> on its first recommendation. Versus holding
to the horizon (marked at the mid: saved = bid at exit − later mid, so the half spread is paid): positive saves money.</p>
<table><tr><th>horizon</th><th>exits</th><th>saved bps, net of half spread (mean)</th><th>false positives (mid rose ≥ {settings.fall_bps:g} bps)</th></tr>
{horizon_rows}</table>
<table><tr><th>measure</th><th>value</th></tr>
<tr><td>positions / exited</td><td>{summary.positions} / {summary.exited}</td></tr>
<tr><td>profitable exits (bid above entry)</td><td>{_cell(summary.profitable_exits_share)}</td></tr>
<tr><td>saved vs holding to stop or close (bps, mean)</td><td>{_cell(summary.saved_vs_hold_to_stop_or_close_bps_mean)}</td></tr>
<tr><td>… the same for an exit at a random moment of those sessions (chance)</td><td>{_cell(summary.chance_saved_vs_hold_to_stop_or_close_bps_mean)}</td></tr>
<tr><td>half spread paid at exit (bps, mean)</td><td>{_cell(summary.half_spread_bps_mean)}</td></tr>
<tr><td>max drawdown held / following (bps, mean)</td><td>{_cell(summary.max_drawdown_held_bps_mean)} / {_cell(summary.max_drawdown_following_bps_mean)}</td></tr>
</table>
{success_section(findings.success_metrics, settings.positions)}
<h2>Each session: mid price (ET) with alerts ▼ and exits ○</h2><p class="legend">{legend}</p>
<p class="note">Hover a chart for the time (ET; hover that text for UTC), the mid and the signals at that moment.</p>
<div id="sessions" class="grid"></div>
<h2>Forward returns at {horizon} s: signals (bars) vs base (grey line)</h2><div id="distributions" class="grid"></div>
<h2>Hit rate vs base rate with intervals, by horizon</h2><div id="lift" class="grid"></div>
<h2>Alerts (orange) and exits (red) per symbol and day, against the 5–15 target</h2><div id="per-day"></div>
<p class="note">Charts drawn by TradingView Lightweight Charts™ v{lightweight_charts_version()} (Apache-2.0), inlined in this page.</p>
<script type="application/json" id="report-data">{embedded}</script>
<script>{_library()}</script>
<script>{_SCRIPT}</script>
</body></html>
"""  # noqa: E501  (the page, byte for byte as written)
