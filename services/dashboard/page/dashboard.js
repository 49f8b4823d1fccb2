// orderflow dashboard: starts from /api/snapshot, then follows /events (server-sent events). Read-only.
// Times: New York, labelled ET; UTC on hover (title). Charts: Lightweight Charts v5 served by orderflow itself.
'use strict';

(function () {
  const LWC = window.LightweightCharts;
  // 'h23': midnight to 1 a.m. reads 00:xx (hour12: false gives 24:xx in Chromium)
  const NY = {timeZone: 'America/New_York', hourCycle: 'h23'};
  const LOG_WINDOW_MS = 30 * 60 * 1000;
  const CHART_WINDOW_SECONDS = 30 * 60;  // a chart shows the last 30 minutes of market time
  const TRIM_SLACK_SECONDS = 60;  // … cut back to that once its oldest point is a minute older (about once a minute)
  const KEPT_MEASURES = 10000;  // the newest delays kept in window.orderflowDashboard.received
  const KEPT_VIOLATIONS = 100;
  const COLOURS = {green: '#26a69a', yellow: '#fdd835', orange: '#ff9800', red: '#ef5350', blue: '#42a5f5'};
  const charts = {};      // symbol → {chart, price, sell, ratio, markers, prices, sells, ratios, marks, book, …}
  const cards = {};       // symbol → card element
  const logItems = [];    // newest first: {el, symbol, severity, time}
  let sequence = null, source = null, lastSummary = null;
  // what the page measured, for the tests and the benchmark: each output's and chart change's delay (ms) from when
  // Redis took it (an output) or ingest published it (the latest market event of a change) to its drawing here
  // (each list keeps only the newest: a page left open all day holds no more than these)
  window.orderflowDashboard = {received: [], ticks: [], outputs: 0, markets: 0, resets: 0, cspViolations: [],
    cspViolationCount: 0};
  const stats = window.orderflowDashboard;
  document.addEventListener('securitypolicyviolation', ev => {
    stats.cspViolationCount++;
    if (stats.cspViolations.length < KEPT_VIOLATIONS) stats.cspViolations.push(ev.violatedDirective);
  });
  function keep(list, item, most) { list.push(item); if (list.length > most) list.splice(0, list.length - most); }

  const $ = id => document.getElementById(id);
  const nyTime = ms => new Date(ms).toLocaleTimeString('en-US', NY) + ' ET';
  const nyClock = seconds => new Date(seconds * 1000).toLocaleTimeString('en-US', NY);
  const utc = ms => new Date(ms).toISOString();
  stats.format = {nyTime, nyClock, utc};
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function timeEl(ms) {
    const node = el('time', '', ms ? nyTime(ms) : '–');
    if (ms) { node.title = utc(ms) + ' (UTC)'; node.dateTime = utc(ms); }
    return node;
  }
  function setText(id, text, cls) {
    const node = $(id);
    node.textContent = text;
    if (cls !== undefined) node.className = 'value ' + cls;
  }
  const ms = value => value === null || value === undefined ? '–' : (value < 10 ? value.toFixed(1) : Math.round(value)) + ' ms';

  // --- token: kept by the server in a cookie; dropped from the address bar ----------------------------------------
  if (new URLSearchParams(location.search).has('token')) history.replaceState(null, '', location.pathname);

  // --- header ------------------------------------------------------------------------------------------------------
  function renderSummary(summary) {
    lastSummary = summary;
    if (summary.clock) { $('clock').textContent = nyTime(summary.clock); $('clock').title = utc(summary.clock) + ' (UTC)'; }
    setText('alerts-5m', summary.alerts_5m);
    const largest = summary.largest_seller;
    $('largest-seller').textContent = largest ? `${largest.symbol} ${largest.shares.toLocaleString('en-US')} @ ${largest.price}` : '–';
    if (largest) $('largest-seller').title = nyTime(largest.time) + ' · ' + utc(largest.time) + ' (UTC)';
    const health = summary.health;
    const sources = Object.entries(health.sources);
    const down = sources.filter(([, s]) => !s.connected);
    const feed = health.redis !== 'ok' ? 'Redis unreachable'
      : sources.length === 0 ? 'no status yet'
      : down.length ? 'disconnected: ' + down.map(([name, s]) => `${name} (${s.code})`).join(', ')
      : 'connected: ' + sources.map(([name]) => name).join(', ');
    setText('feed', feed, health.redis !== 'ok' || down.length ? 'bad' : sources.length ? 'good' : '');
    renderAge(summary);
    setText('lag', health.lag === null ? '–' : health.lag.toLocaleString('en-US') + ' entries', health.lag > 1000 ? 'bad' : '');
    setText('latency', `${ms(health.latency_p50_ms)} / ${ms(health.latency_p99_ms)}`);
    setText('delay', `${ms(health.delay_p50_ms)} / ${ms(health.delay_p99_ms)}`);
    window.orderflowMarket.renderBanner($('market-banner'), summary.market);
    const banner = $('banner');
    banner.hidden = health.redis === 'ok';
    if (!banner.hidden) banner.textContent = 'Redis unreachable since ' + nyTime(health.redis_since) + ': nothing shown is current';
    const seen = new Set();
    for (const card of summary.cards) { renderCard(card); seen.add(card.symbol); }
    for (const symbol of Object.keys(cards)) if (!seen.has(symbol)) { cards[symbol].remove(); delete cards[symbol]; delete drawnCards[symbol]; removeChart(symbol); }
    refreshSymbolFilter();
  }
  function renderAge(summary) {
    const health = summary.health;
    if (!health.last_frame) { setText('last-frame', 'no data yet', 'bad'); return; }
    const age = Math.max(0, (Date.now() - health.last_frame) / 1000);
    setText('last-frame', age < 60 ? age.toFixed(1) + ' s ago' : Math.round(age / 60) + ' min ago', age > 30 ? 'bad' : 'good');
    $('last-frame').title = nyTime(health.last_frame) + ' · ' + utc(health.last_frame) + ' (UTC)';
  }
  setInterval(() => { if (lastSummary) renderAge(lastSummary); }, 1000);

  // --- cards ---------------------------------------------------------------------------------------------------------
  const drawnCards = {};  // symbol → the JSON last drawn
  function renderCard(card) {
    const drawn = JSON.stringify(card);
    if (drawnCards[card.symbol] === drawn && cards[card.symbol]) return;
    drawnCards[card.symbol] = drawn;
    let node = cards[card.symbol];
    if (!node) {
      node = el('article', 'card');
      node.dataset.symbol = card.symbol;
      node.append(el('div', 'card-head'), el('dl', 'facts'), el('div', 'chart'),
        el('div', 'chart-legend', 'last 30 min: price, ▼ alert, ● exit · sell share % a minute · volume × normal a minute · hover: time in ET and UTC · double-click: fit'), el('table', 'book'));
      const ordered = Object.keys(cards).concat(card.symbol).sort();
      const after = ordered[ordered.indexOf(card.symbol) + 1];
      $('cards').insertBefore(node, after ? cards[after] : null);
      cards[card.symbol] = node;
      makeChart(card.symbol, node.querySelector('.chart'));
    }
    node.className = 'card colour-' + card.colour;
    node.dataset.colour = card.colour;
    node.dataset.state = card.monitoring.state;
    const head = el('div', 'card-head');
    head.append(el('span', 'symbol', card.symbol), el('span', 'price', card.price ? '$' + card.price : 'no trade yet'));
    if (card.pnl) {
      const sign = card.pnl.dollars >= 0 ? '+' : '';
      head.append(el('span', 'pnl ' + (card.pnl.dollars >= 0 ? 'up' : 'down'),
        `P&L ${sign}${card.pnl.dollars.toLocaleString('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2})} (${sign}${card.pnl.percent.toFixed(2)}%)`));
    }
    const state = el('span', 'state state-' + card.monitoring.state, card.monitoring.state);
    if (card.monitoring.since) state.title = 'since ' + nyTime(card.monitoring.since) + ' · ' + utc(card.monitoring.since) + ' (UTC)';
    head.append(state);
    node.querySelector('.card-head').replaceWith(head);
    const facts = el('dl', 'facts');
    const fact = (name, value, cls) => { facts.append(el('dt', '', name)); const dd = el('dd', cls || ''); if (value instanceof Node) dd.append(value); else dd.textContent = value; facts.append(dd); return dd; };
    if (card.monitoring.reason) fact('reason', card.monitoring.reason, 'reason');
    fact('position', card.position ? `${card.position.quantity.toLocaleString('en-US')} @ ${card.position.entry}` + (card.position.stop ? `, stop ${card.position.stop}` : '') : 'none (shown by name)');
    fact('alert window', `${card.large_sellers} large seller${card.large_sellers === 1 ? '' : 's'}, ${card.red_bursts} red burst${card.red_bursts === 1 ? '' : 's'}`, 'window').dataset.sellers = card.large_sellers;
    if (card.last_exit) {
      const text = el('span', 'exit');
      text.append(timeEl(card.last_exit.time), document.createTextNode(' ' + window.orderflowMarket.exitWords(card.last_exit)));
      text.title = card.last_exit.reasoning; text.dataset.action = card.last_exit.action; text.dataset.scope = card.last_exit.scope;
      fact('last exit', text, 'last-exit');
      const bots = Object.entries(card.last_exit.bots);
      fact('bot', bots.length ? bots.map(([name, mark]) => `${name}: ${mark}`).join('; ') : 'not known yet', 'bot');
    } else {
      fact('last exit', 'none', 'last-exit');
    }
    if (card.detector !== null) fact('detector', card.detector || 'NOBODY', card.detector ? 'detector' : 'detector bad');
    if (card.lag !== null && card.lag !== undefined) fact('lag', card.lag.toLocaleString('en-US') + ' entries', 'lag');
    node.querySelector('.facts').replaceWith(facts);
  }

  // --- charts --------------------------------------------------------------------------------------------------------
  // each chart keeps its data here (what the library draws, trimmed to the last 30 minutes of market time); a chart
  // off screen only merges changes into it (a point per second, a bar per minute, the latest book) and is drawn
  // once, whole, when it scrolls into view: 50 charts redrawn 4 times a second would keep the page busy
  function makeChart(symbol, container) {
    const chart = LWC.createChart(container, {
      autoSize: true,
      layout: {background: {color: '#181c22'}, textColor: '#c8d0d8', panes: {separatorColor: '#2a3038'}},
      grid: {vertLines: {color: '#22272e'}, horzLines: {color: '#22272e'}},
      localization: {timeFormatter: t => nyClock(t) + ' ET'},
      timeScale: {timeVisible: true, secondsVisible: false, rightOffset: 6, tickMarkFormatter: t => nyClock(t).slice(0, 5)},
      rightPriceScale: {borderColor: '#2a3038'},
    });
    const price = chart.addSeries(LWC.LineSeries, {color: COLOURS.blue, lineWidth: 2, priceLineVisible: false});
    const sell = chart.addSeries(LWC.HistogramSeries, {color: COLOURS.red, priceFormat: {type: 'percent'}, title: 'sell %'}, 1);
    const ratio = chart.addSeries(LWC.HistogramSeries, {color: COLOURS.blue, title: 'vol × normal'}, 2);
    const panes = chart.panes();
    [3, 1, 1].forEach((factor, index) => panes[index] && panes[index].setStretchFactor(factor));
    const markers = LWC.createSeriesMarkers(price, []);
    // the point under the pointer: its New York time, UTC and price (the axis label shows ET only)
    const hover = el('div', 'chart-hover');
    hover.hidden = true;
    container.append(hover);
    chart.subscribeCrosshairMove(param => {
      const point = param.time === undefined ? null : param.seriesData.get(price);
      if (!point || point.value === undefined) { hover.hidden = true; return; }
      const at = param.time * 1000;
      hover.textContent = `${nyTime(at)} · ${utc(at).replace('.000Z', 'Z')} UTC · $${point.value}`;
      hover.title = utc(at) + ' (UTC)';
      hover.hidden = false;
    });
    charts[symbol] = {chart, price, sell, ratio, markers, hover, container, prices: [], sells: [], ratios: [], marks: [],
      book: null, follow: true, visible: false, stale: false, fitted: 0};
    visibility.observe(container);
    // the whole 30 minutes stay in view as points arrive, until the user zooms or scrolls the chart
    container.addEventListener('wheel', () => { charts[symbol].follow = false; }, {passive: true});
    container.addEventListener('pointerdown', () => { charts[symbol].follow = false; });
    container.addEventListener('dblclick', () => { charts[symbol].follow = true; chart.timeScale().fitContent(); });
  }
  const visibility = new IntersectionObserver(entries => {
    for (const entry of entries) {
      const symbol = entry.target.closest('.card').dataset.symbol;
      const c = charts[symbol];
      if (!c) continue;
      c.visible = entry.isIntersecting;
      if (c.visible && c.stale) draw(symbol);
    }
  });
  function removeChart(symbol) {
    const c = charts[symbol];
    if (!c) return;
    visibility.unobserve(c.container); c.chart.remove(); delete charts[symbol];
  }
  function barPoints(bar) {
    return [
      bar.sell_share === null ? {time: bar.time} : {time: bar.time, value: bar.sell_share * 100, color: bar.sell_share >= 0.6 ? COLOURS.red : '#5c6773'},
      bar.volume_ratio === null ? {time: bar.time} : {time: bar.time, value: bar.volume_ratio, color: bar.volume_ratio >= 3 ? COLOURS.orange : '#3d6f9e'},
    ];
  }
  const last = list => list.length ? list[list.length - 1].time : 0;
  // a point into a series' data: the same time replaces the last point, a later one follows it, an earlier one is
  // already there (the snapshot had it); true when the data changed
  function merge(list, point) {
    const latest = last(list);
    if (list.length && point.time === latest) list[list.length - 1] = point;
    else if (!list.length || point.time > latest) list.push(point);
    else return false;
    return true;
  }
  // cut what is older than 30 minutes before the last price point, once the oldest is a minute past that; true when cut
  function trim(c, force) {
    const newest = last(c.prices);
    if (!c.prices.length || (!force && c.prices[0].time >= newest - CHART_WINDOW_SECONDS - TRIM_SLACK_SECONDS)) return false;
    const oldest = newest - CHART_WINDOW_SECONDS, oldestBar = oldest - oldest % 60;
    const before = c.prices.length + c.sells.length + c.marks.length;
    c.prices = c.prices.filter(point => point.time >= oldest);
    c.sells = c.sells.filter(point => point.time >= oldestBar);
    c.ratios = c.ratios.filter(point => point.time >= oldestBar);
    c.marks = c.marks.filter(m => m.second >= oldest);
    return c.prices.length + c.sells.length + c.marks.length !== before;
  }
  function draw(symbol) {
    const c = charts[symbol];
    c.stale = false;
    c.price.setData(c.prices);
    c.sell.setData(c.sells);
    c.ratio.setData(c.ratios);
    renderBook(symbol, c.book);
    placeMarkers(symbol);
    if (c.follow) { c.fitted = Date.now(); c.chart.timeScale().fitContent(); }
  }
  function setChart(symbol, data) {
    const c = charts[symbol];
    if (!c) return;
    c.prices = data.prices.map(([time, value]) => ({time, value}));
    const bars = data.bars.map(barPoints);
    c.sells = bars.map(([sell]) => sell);
    c.ratios = bars.map(([, ratio]) => ratio);
    c.book = data.book;
    trim(c, true);
    renderBook(symbol, c.book);
    if (c.visible) draw(symbol); else c.stale = true;
  }
  function updateChart(symbol, change) {
    const c = charts[symbol];
    if (!c) return;
    const live = c.visible && !c.stale;
    for (const [time, value] of change.prices) if (merge(c.prices, {time, value}) && live) c.price.update({time, value});
    for (const bar of change.bars) {
      const [sell, ratio] = barPoints(bar);
      if (merge(c.sells, sell) && live) c.sell.update(sell);
      if (merge(c.ratios, ratio) && live) c.ratio.update(ratio);
    }
    if (change.book) c.book = change.book;
    if (trim(c, false)) c.stale = true;
    if (!c.visible) { c.stale = true; return; }
    if (c.stale) { draw(symbol); return; }
    if (change.book) renderBook(symbol, c.book);
    placeMarkers(symbol);
    if (c.follow && change.prices.length && Date.now() - c.fitted > 1000) { c.fitted = Date.now(); c.chart.timeScale().fitContent(); }
  }
  // what a chart holds and what the library draws (for the tests)
  stats.chart = symbol => {
    const c = charts[symbol];
    if (!c) return null;
    return {prices: c.prices.map(point => [point.time, point.value]), bars: c.sells.map(point => point.time),
      marks: c.marks.map(m => m.second), book: c.book ? c.book.time : null, visible: c.visible, stale: c.stale,
      drawn: c.price.data().map(point => point.time), drawnBars: c.sell.data().map(point => point.time)};
  };
  function renderBook(symbol, book) {
    const table = cards[symbol] && cards[symbol].querySelector('.book');
    if (!table) return;
    table.replaceChildren();
    if (!book) return;
    const head = el('tr');
    head.append(el('th', '', `book ${book.venue || ''}`.trim()), el('th', '', 'ask'), el('th', '', 'size'), el('th', '', 'bid'), el('th', '', 'size'));
    table.append(head);
    const rows = Math.max(book.asks.length, book.bids.length);
    for (let i = 0; i < rows; i++) {
      const row = el('tr');
      const ask = book.asks[i] || ['', ''], bid = book.bids[i] || ['', ''];
      const when = el('td', 'book-time');
      if (i === 0) when.append(timeEl(book.time));
      row.append(when, el('td', 'ask', ask[0]), el('td', '', ask[1] === '' ? '' : ask[1].toLocaleString('en-US')),
        el('td', 'bid', bid[0]), el('td', '', bid[1] === '' ? '' : bid[1].toLocaleString('en-US')));
      table.append(row);
    }
  }
  function marker(item) {
    const exit = item.kind === 'exit';
    return {second: Math.floor(item.time / 1000), position: exit ? 'belowBar' : 'aboveBar', color: COLOURS[item.colour] || COLOURS.yellow,
      shape: exit ? 'circle' : 'arrowDown', text: exit ? 'exit' : item.kind === 'red_burst' ? 'burst' : 'seller'};
  }
  function placeMarkers(symbol) {
    // a marker sits on a price point: the last one at or before its time
    const c = charts[symbol];
    if (!c || !c.prices.length) return;
    const placed = [];
    for (const m of c.marks) {
      let lo = 0, hi = c.prices.length - 1, at = -1;
      while (lo <= hi) { const mid = (lo + hi) >> 1; if (c.prices[mid].time <= m.second) { at = mid; lo = mid + 1; } else hi = mid - 1; }
      if (at < 0) continue;
      placed.push({time: c.prices[at].time, position: m.position, color: m.color, shape: m.shape, text: m.text});
    }
    placed.sort((a, b) => a.time - b.time);
    c.markers.setMarkers(placed);
  }

  // --- alert log -----------------------------------------------------------------------------------------------------
  function addOutput(item, live) {
    if (document.querySelector(`#log li[data-id="${CSS.escape(item.id)}"]`)) return;
    const li = el('li', 'log-' + item.colour);
    li.dataset.id = item.id; li.dataset.symbol = item.symbol; li.dataset.severity = item.severity; li.dataset.kind = item.kind;
    li.dataset.time = item.time;
    li.append(timeEl(item.time), el('span', 'sym', item.symbol), el('span', 'sev', item.severity + ' '), el('span', 'what', item.what));
    for (const extra of window.orderflowMarket.logExtras(item)) li.append(' ', extra);
    const log = $('log');
    const at = logItems.findIndex(other => other.time <= item.time);
    const entry = {el: li, symbol: item.symbol, severity: item.severity, time: item.time};
    if (at < 0) { log.append(li); logItems.push(entry); } else { log.insertBefore(li, logItems[at].el); logItems.splice(at, 0, entry); }
    for (const symbol of [item.symbol].concat(item.positions || [])) {  // a market exit: on each position it names
      const c = charts[symbol]; if (c) { c.marks.push(marker(item)); if (c.visible && !c.stale) placeMarkers(symbol); else c.stale = true; } }
    applyFilter(entry);
    if (live && item.entry_ms) keep(stats.received, {kind: item.kind, id: item.id, latency_ms: Date.now() - item.entry_ms}, KEPT_MEASURES);
  }
  function trimLog(clock) {
    while (logItems.length && clock - logItems[logItems.length - 1].time > LOG_WINDOW_MS) logItems.pop().el.remove();
    countLog();
  }
  function applyFilter(entry) {
    const symbol = $('filter-symbol').value, severity = $('filter-severity').value;
    entry.el.classList.toggle('hidden', (symbol && entry.symbol !== symbol) || (severity && entry.severity !== severity));
  }
  function countLog() {
    const shown = logItems.filter(entry => !entry.el.classList.contains('hidden')).length;
    $('log-count').textContent = `${shown} shown of ${logItems.length}`;
  }
  function refreshSymbolFilter() {
    const select = $('filter-symbol');
    const have = new Set([...select.options].map(o => o.value));
    const want = [...new Set(Object.keys(cards).concat(logItems.map(e => e.symbol)))].sort();
    for (const symbol of want) if (!have.has(symbol)) select.append(new Option(symbol, symbol));
  }
  for (const id of ['filter-symbol', 'filter-severity']) $(id).addEventListener('change', () => { logItems.forEach(applyFilter); countLog(); });

  // --- data ----------------------------------------------------------------------------------------------------------
  async function start() {
    if (source) { source.close(); source = null; }
    $('connection').dataset.state = 'connecting'; $('connection').textContent = 'loading…';
    let snapshot;
    try {
      const response = await fetch('api/snapshot', {cache: 'no-store', credentials: 'same-origin'});
      if (!response.ok) throw new Error(response.status + ' ' + response.statusText);
      snapshot = await response.json();
    } catch (error) {
      $('connection').dataset.state = 'lost'; $('connection').textContent = 'dashboard unreachable (' + error.message + '), retrying';
      setTimeout(start, 2000);
      return;
    }
    for (const entry of logItems.splice(0)) entry.el.remove();
    for (const c of Object.values(charts)) c.marks = [];
    renderSummary(snapshot.summary);
    for (const [symbol, data] of Object.entries(snapshot.charts)) setChart(symbol, data);
    for (const item of snapshot.log) addOutput(item, false);
    if (snapshot.summary.clock) trimLog(snapshot.summary.clock);
    refreshSymbolFilter();
    countLog();
    sequence = snapshot.sequence;
    follow();
  }
  function follow() {
    const own = source = new EventSource('events?after=' + encodeURIComponent(sequence));
    source.onopen = () => { $('connection').dataset.state = 'live'; $('connection').textContent = 'live'; };
    // a dropped stream or a server gone is retried by the browser itself (with Last-Event-ID: the events missed
    // follow, or a reset when the server is another run); a refused one (not 200, e.g. 401) ends the EventSource for
    // good: start again from the snapshot, which says why and keeps trying
    source.onerror = () => {
      $('connection').dataset.state = 'lost'; $('connection').textContent = 'reconnecting…';
      if (own.readyState === EventSource.CLOSED) setTimeout(() => { if (source === own) start(); }, 2000);
    };
    source.addEventListener('summary', ev => { renderSummary(JSON.parse(ev.data)); if (lastSummary.clock) trimLog(lastSummary.clock); });
    source.addEventListener('output', ev => { stats.outputs++; addOutput(JSON.parse(ev.data), true); refreshSymbolFilter(); countLog(); });
    source.addEventListener('market', ev => {
      stats.markets++;
      for (const [symbol, change] of Object.entries(JSON.parse(ev.data))) {
        updateChart(symbol, change);
        if (change.received && stats.ticks.length < 100000) stats.ticks.push(Date.now() - change.received);
      }
    });
    source.addEventListener('reset', () => { stats.resets++; start(); });
  }
  $('library-version').textContent = 'v' + LWC.version();
  start();
})();
