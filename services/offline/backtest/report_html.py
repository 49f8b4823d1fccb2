"""The backtest's ``report.html``: one self-contained page a trader can read.

No network, no external script: the findings are embedded as JSON and a
small inline script draws the charts as SVG when the page opens (each chart
marks itself ``data-drawn="1"`` once drawn, which the browser test checks).
Tables are rendered here, so the numbers read even with scripts off. Times
are New York exchange time, labelled. The script and the page template are kept as served, long lines and all
(``noqa: E501`` on those two strings): wrapping them would change the page's bytes.
"""

from __future__ import annotations

import html
import json

import msgspec

from services.offline.backtest.models import BacktestReport, Interval, SessionChart

KIND_NAMES = {
    "exit": "exit recommendation",
    "large_seller/tape": "large seller (tape)",
    "large_seller/book": "large seller (book)",
    "red_burst": "red burst",
}

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2733;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccd;padding:3px 8px;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}.note{color:#556;max-width:900px}
.good{color:#0a6b2a}.bad{color:#a01818}svg.chart{background:#fafbff;border:1px solid #dde;margin:6px 6px 6px 0}
.grid{display:flex;flex-wrap:wrap}.legend span{margin-right:14px}
"""

_SCRIPT = r"""
const data = JSON.parse(document.getElementById('report-data').textContent);
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, parent, text){const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;if(parent)parent.appendChild(e);return e;}
function chart(container, w, h, name){const s=el('svg',{class:'chart',width:w,height:h,viewBox:`0 0 ${w} ${h}`,'data-chart':name},null);container.appendChild(s);return s;}
function scale(d0,d1,r0,r1){return v=>r0+(v-d0)*(r1-r0)/((d1-d0)||1);}
function hhmm(seconds){const m=Math.floor(570+seconds/60);return String(Math.floor(m/60)).padStart(2,'0')+':'+String(m%60).padStart(2,'0');}
const COLOURS={exit:'#c0142a','large_seller/tape':'#e07b00','large_seller/book':'#8a5cc7',red_burst:'#d4267e',base:'#7d8a99'};
// 1. each session's mid with its signals
const sessions=document.getElementById('sessions');
for(const s of data.sessions){
  const w=560,h=220,svg=chart(sessions,w,h,'session '+s.symbol+' '+s.day);
  if(!s.points.length){continue;}
  const xs=s.points.map(p=>p[0]),ys=s.points.map(p=>p[1]);
  const x=scale(0,23400,44,w-10),y=scale(Math.min(...ys),Math.max(...ys),h-28,22);
  el('text',{x:44,y:15,'font-size':13,'font-weight':'bold'},svg,`${s.symbol} ${s.day} — mid, New York time`);
  el('path',{d:s.points.map((p,i)=>(i?'L':'M')+x(p[0]).toFixed(1)+' '+y(p[1]).toFixed(1)).join(''),fill:'none',stroke:'#2b4c7e','stroke-width':1.2},svg);
  for(const t of [0,7200,14400,21600]){el('text',{x:x(t),y:h-10,'font-size':10,'text-anchor':'middle'},svg,hhmm(t)+' ET');}
  el('text',{x:40,y:y(Math.max(...ys))+4,'font-size':10,'text-anchor':'end'},svg,Math.max(...ys).toFixed(2));
  el('text',{x:40,y:y(Math.min(...ys)),'font-size':10,'text-anchor':'end'},svg,Math.min(...ys).toFixed(2));
  for(const m of s.marks){
    let near=s.points.reduce((a,p)=>Math.abs(p[0]-m.second)<Math.abs(a[0]-m.second)?p:a,s.points[0]);
    const cx=x(m.second),cy=y(near[1]);
    if(m.kind==='exit'){el('circle',{cx,cy,r:5,fill:'none',stroke:COLOURS.exit,'stroke-width':2,class:'mark-exit'},svg);}
    else{el('path',{d:`M${cx-4} ${cy-9}L${cx+4} ${cy-9}L${cx} ${cy-2}Z`,fill:COLOURS[m.kind]||'#444',class:'mark-alert'},svg);}
  }
  svg.setAttribute('data-drawn','1');
}
// 2. forward-return distributions at the chosen horizon, signals vs base
const dist=document.getElementById('distributions');
for(const kind of Object.keys(data.distributions).filter(k=>k!=='base')){
  const w=380,h=200,svg=chart(dist,w,h,'distribution '+kind);
  const all=data.distributions[kind].concat(data.distributions.base);
  const lo=Math.max(-60,Math.min(...all)),hi=Math.min(60,Math.max(...all)),bins=24,width=(hi-lo)/bins||1;
  function hist(v){const c=new Array(bins).fill(0);for(const r of v){const i=Math.min(bins-1,Math.max(0,Math.floor((r-lo)/width)));c[i]++;}return c.map(n=>n/(v.length||1));}
  const hs=hist(data.distributions[kind]),hb=hist(data.distributions.base),top=Math.max(...hs,...hb)||1;
  const x=scale(lo,hi,30,w-10),y=scale(0,top,h-30,24);
  el('text',{x:30,y:15,'font-size':12,'font-weight':'bold'},svg,`${data.names[kind]||kind}: ${data.distributions[kind].length} vs base ${data.distributions.base.length}`);
  hb.forEach((v,i)=>el('rect',{x:x(lo+i*width),y:y(v),width:Math.max(1,x(lo+width)-x(lo)-1),height:y(0)-y(v),fill:COLOURS.base,opacity:0.45},svg));
  hs.forEach((v,i)=>el('rect',{x:x(lo+i*width)+2,y:y(v),width:Math.max(1,x(lo+width)-x(lo)-5),height:y(0)-y(v),fill:COLOURS[kind]||'#444',opacity:0.75,class:'bar'},svg));
  el('line',{x1:x(0),x2:x(0),y1:22,y2:h-30,stroke:'#333','stroke-dasharray':'3 3'},svg);
  el('text',{x:x(lo),y:h-12,'font-size':10},svg,lo.toFixed(0)+' bps');el('text',{x:x(hi),y:h-12,'font-size':10,'text-anchor':'end'},svg,hi.toFixed(0)+' bps');
  svg.setAttribute('data-drawn','1');
}
// 3. hit rate vs base with intervals, per kind and horizon
const lift=document.getElementById('lift');
{
  const rows=[];for(const [kind,byH] of Object.entries(data.versus)){for(const [hz,r] of Object.entries(byH)){if(r.signals)rows.push([kind,hz,r]);}}
  const w=760,h=40+rows.length*22,svg=chart(lift,w,h,'lift');
  const x=scale(0,1,260,w-20);
  el('text',{x:10,y:16,'font-size':12,'font-weight':'bold'},svg,`share of moments followed by a fall of ≥ ${data.fall_bps} bps within the horizon (95 % Wilson intervals); grey = base`);
  rows.forEach(([kind,hz,r],i)=>{const yy=36+i*22;
    el('text',{x:10,y:yy+4,'font-size':11},svg,`${data.names[kind]||kind}, ${hz} s (n=${r.signals})`);
    el('line',{x1:x(r.base_hit_rate_ci95[0]),x2:x(r.base_hit_rate_ci95[1]),y1:yy+5,y2:yy+5,stroke:COLOURS.base,'stroke-width':3},svg);
    el('circle',{cx:x(r.base_hit_rate),cy:yy+5,r:3,fill:COLOURS.base},svg);
    el('line',{x1:x(r.hit_rate_ci95[0]),x2:x(r.hit_rate_ci95[1]),y1:yy-2,y2:yy-2,stroke:COLOURS[kind]||'#444','stroke-width':2},svg);
    el('circle',{cx:x(r.hit_rate),cy:yy-2,r:4,fill:COLOURS[kind]||'#444',class:'dot'},svg);});
  for(const t of [0,0.25,0.5,0.75,1]){el('text',{x:x(t),y:h-4,'font-size':10,'text-anchor':'middle'},svg,(t*100)+'%');}
  svg.setAttribute('data-drawn','1');
}
// 4. alerts per day per symbol against the 5-15 band
const perDay=document.getElementById('per-day');
{
  const entries=Object.entries(data.per_day),w=Math.max(360,60+entries.length*70),h=240,svg=chart(perDay,w,h,'per day');
  const top=Math.max(60,...entries.map(e=>e[1].alerts)),y=scale(0,top,h-40,20);
  el('rect',{x:40,y:y(15),width:w-50,height:y(5)-y(15),fill:'#cfe8d4'},svg);
  el('line',{x1:40,x2:w-10,y1:y(50),y2:y(50),stroke:'#a01818','stroke-dasharray':'4 3'},svg);
  el('text',{x:w-12,y:y(50)-3,'font-size':10,'text-anchor':'end',fill:'#a01818'},svg,'50: guardrail');
  el('text',{x:w-12,y:y(15)-3,'font-size':10,'text-anchor':'end',fill:'#0a6b2a'},svg,'target 5–15');
  entries.forEach(([key,v],i)=>{const bx=50+i*70;
    el('rect',{x:bx,y:y(Math.min(v.alerts,top)),width:26,height:y(0)-y(Math.min(v.alerts,top)),fill:'#e07b00',class:'bar'},svg);
    el('rect',{x:bx+28,y:y(v.exits),width:14,height:y(0)-y(v.exits),fill:COLOURS.exit},svg);
    el('text',{x:bx+13,y:y(Math.min(v.alerts,top))-3,'font-size':10,'text-anchor':'middle'},svg,v.alerts);
    el('text',{x:bx+20,y:h-24,'font-size':9,'text-anchor':'middle'},svg,key.split(' ')[0]);
    el('text',{x:bx+20,y:h-12,'font-size':9,'text-anchor':'middle'},svg,key.split(' ')[1].slice(2));});
  svg.setAttribute('data-drawn','1');
}
document.body.setAttribute('data-charts-drawn',document.querySelectorAll('svg.chart[data-drawn="1"]').length);
"""  # noqa: E501  (the page's script, byte for byte as served)


def _cell(value: object, suffix: str = "") -> str:
    return (
        "–" if value is None else f"{value:g}{suffix}" if isinstance(value, (int, float)) else html.escape(str(value))
    )


def _interval(pair: Interval, suffix: str = "") -> str:
    return "–" if not pair or pair[0] is None else f"[{pair[0]:g}, {pair[1]:g}]{suffix}"


def render_page(
    findings: BacktestReport, sessions: list[SessionChart], distributions: dict[str, list[float]], horizon: int
) -> str:
    """The page for ``findings`` (from :func:`services.offline.backtest.report.report`), its charts drawn from
    ``sessions`` and the forward-return ``distributions`` at ``horizon`` seconds."""
    versus = findings.versus_chance.by_kind
    rows = []
    for kind, by_horizon in versus.items():
        for hz, r in by_horizon.items():
            tone = "good" if r.difference_ci95_bps[1] is not None and r.difference_ci95_bps[1] < 0 else ""
            rows.append(
                f"<tr><td>{KIND_NAMES.get(kind, kind)}</td><td>{hz} s</td><td>{r.signals}</td>"
                f"<td>{r.censored_past_close}</td>"
                f"<td>{_cell(r.mean_forward_bps)}</td><td>{_cell(r.base_mean_forward_bps)}</td>"
                f"<td class='{tone}'>{_cell(r.difference_bps)} {_interval(r.difference_ci95_bps)}</td>"
                f"<td>{_cell(r.hit_rate)} {_interval(r.hit_rate_ci95)}</td>"
                f"<td>{_cell(r.base_hit_rate)} {_interval(r.base_hit_rate_ci95)}</td><td>{_cell(r.lift)}</td>"
                f"<td>{_cell(r.lead_seconds_median)}</td></tr>"
            )
    summary = findings.following_exits.summary
    horizon_rows = "".join(
        f"<tr><td>{hz} s</td><td>{r.exits}</td><td class='{'good' if (r.saved_net_bps_mean or 0) > 0 else 'bad'}'>"
        f"{_cell(r.saved_net_bps_mean)}</td>"
        f"<td>{_cell(r.false_positive_share)} {_interval(r.false_positive_ci95)}</td></tr>"
        for hz, r in summary.by_horizon.items()
    )
    settings = findings.settings
    payload = {
        "sessions": msgspec.to_builtins(sessions),
        "distributions": distributions,
        "versus": msgspec.to_builtins(versus),
        "per_day": msgspec.to_builtins(findings.per_day),
        "fall_bps": settings.fall_bps,
        "names": KIND_NAMES,
    }
    embedded = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orderflow backtest</title><style>{_STYLE}</style></head>
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
<h2>Each session: mid price (ET) with alerts ▼ and exits ○</h2><div id="sessions" class="grid"></div>
<h2>Forward returns at {horizon} s: signals (colour) vs base (grey)</h2><div id="distributions" class="grid"></div>
<h2>Hit rate vs base rate with intervals</h2><div id="lift"></div>
<h2>Alerts (orange) and exits (red) per symbol and day, against the 5–15 target</h2><div id="per-day"></div>
<script type="application/json" id="report-data">{embedded}</script>
<script>{_SCRIPT}</script>
</body></html>
"""  # noqa: E501  (the page, byte for byte as written)
