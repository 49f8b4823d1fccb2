// orderflow dashboard: the market beside the alerts. An alert's context label as a badge (its words, not colour
// alone; the numbers on hover), the banner of a market sell-off (index, severity, fall in bps, when in ET, the
// positions its exit names) and an exit's scope, action and expected fall against its cost. Used by dashboard.js.
'use strict';

(function () {
  const NY = {timeZone: 'America/New_York', hourCycle: 'h23'};
  const nyTime = ms => new Date(ms).toLocaleTimeString('en-US', NY) + ' ET';
  const utc = ms => new Date(ms).toISOString();
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  // the badge of a context: "market-wide", its title the numbers (bps over the window) and the reason
  function contextBadge(context) {
    if (!context) return null;
    const badge = el('span', 'ctx ctx-' + context.label, context.words);
    badge.dataset.label = context.label;
    const lines = [context.words + ' — ' + context.numbers];
    if (context.index) {
      lines.push(`index ${context.index}: ${context.index_return_bps} bps · stock: ${context.stock_return_bps} bps · ` +
        `relative: ${context.relative_return_bps} bps · beta ${context.beta} · window ${context.window_seconds} s`);
    }
    if (context.reason) lines.push(context.reason);
    badge.title = lines.join('\n');
    badge.setAttribute('aria-label', 'market context: ' + lines.join('; '));
    return badge;
  }
  // an exit's action as a badge ("exit" / "watch"), its title the expected fall against the cost
  function actionBadge(item) {
    if (!item.action) return null;
    const badge = el('span', 'act act-' + item.action, item.action === 'exit' ? 'action: exit' : 'action: watch');
    badge.dataset.action = item.action;
    badge.title = item.action_words;
    return badge;
  }
  // what an exit adds to its log line: "market scope: AAPL, BAC · expected fall 42.0 bps vs cost 1.5 bps"
  function exitDetail(item) {
    const parts = [];
    if (item.scope === 'market') parts.push('market scope: ' + (item.positions.length ? item.positions.join(', ') : 'no position named'));
    if (item.expected_fall_bps) parts.push(`expected fall ${item.expected_fall_bps.toFixed(1)} bps vs cost ${item.cost_bps.toFixed(1)} bps`);
    return parts.length ? el('span', 'exit-detail', parts.join(' · ')) : null;
  }
  // the banner: one line per index sold off in the alert window (the summary's "market")
  function renderBanner(container, market) {
    container.replaceChildren();
    container.hidden = !market || market.length === 0;
    if (container.hidden) return;
    for (const selloff of market) {
      const line = el('div', 'market-line severity-' + selloff.severity);
      line.dataset.index = selloff.index;
      line.dataset.id = selloff.id;
      const when = el('time', '', nyTime(selloff.time));
      when.title = utc(selloff.time) + ' (UTC)'; when.dateTime = utc(selloff.time);
      line.append(el('strong', 'market-title', `MARKET SELL-OFF ${selloff.index}`),
        el('span', 'market-severity', selloff.severity),
        el('span', 'market-fall', selloff.fall_bps === null ? selloff.what : `fell ${selloff.fall_bps.toFixed(1)} bps` +
          (selloff.window_seconds ? ` in ${selloff.window_seconds} s` : '') +
          (selloff.sell_share === null ? '' : `, ${Math.round(selloff.sell_share * 100)}% sold`)),
        document.createTextNode('since '), when);
      const exit = selloff.exit;
      const positions = el('span', 'market-positions');
      if (exit) {
        positions.textContent = `${exit.action === 'exit' ? 'exit' : 'watch'}: ` +
          (exit.positions.length ? exit.positions.join(', ') : 'no position named') +
          (exit.expected_fall_bps ? ` (expected fall ${exit.expected_fall_bps.toFixed(1)} bps vs cost ${exit.cost_bps.toFixed(1)} bps)` : '');
        positions.dataset.action = exit.action;
      } else {
        positions.textContent = 'no market exit yet' + (selloff.held.length ? '; positions held: ' + selloff.held.join(', ') : '');
      }
      line.append(positions);
      if (selloff.reason) line.title = selloff.reason;
      container.append(line);
    }
  }
  // what a log line shows after its text: the context badge; for an exit also its action and detail
  function logExtras(item) {
    const extras = [contextBadge(item.context)];
    if (item.kind === 'exit') extras.push(actionBadge(item), exitDetail(item));
    return extras.filter(Boolean);
  }
  // a card's last exit after its time: "market selloff (SPY, market scope) · exit: expected fall 42.0 bps vs cost 1.5 bps"
  const exitWords = last => last.trigger + (last.from ? ` (${last.from}, market scope)` : '') + (last.action_words ? ' · ' + last.action_words : '');
  window.orderflowMarket = {contextBadge, actionBadge, exitDetail, renderBanner, logExtras, exitWords};
})();
