// netward matrix page: builds the heat-map, the graph and the connection list from the
// netward-data element. No libraries, no network.
window.addEventListener('error', function (e) { document.body.setAttribute('data-error', String(e.message)); });
(function () {
  'use strict';

  var data = JSON.parse(document.getElementById('netward-data').textContent);
  var groups = data.groups || [];
  var conns = data.connections || [];
  var byId = {};
  groups.forEach(function (g) { byId[g.id] = g; });
  var connOf = {};
  conns.forEach(function (c) { connOf[c.from + '\n' + c.to] = c; });

  var namespaces = [];
  groups.forEach(function (g) {
    if (g.kind === 'workload' && namespaces.indexOf(g.namespace) < 0) namespaces.push(g.namespace);
  });
  var hasOutside = groups.some(function (g) { return g.kind !== 'workload'; });
  var PALETTE = ['#3b7dd8', '#2a9d6f', '#9b59b6', '#e08e0b', '#17a2b8', '#d6457a', '#6d8a1f', '#8d6e63', '#5c6bc0', '#00897b', '#c0392b', '#7f8c8d'];
  function nsColor(ns) { return PALETTE[namespaces.indexOf(ns) % PALETTE.length]; }
  function groupColor(g) {
    if (g.kind === 'workload') return nsColor(g.namespace);
    if (g.kind === 'cidr' || g.kind === 'world') return '#e07b24';
    return '#6b7280';
  }

  var state = { ns: {}, outside: true, sel: null };

  // ---- URL fragment: #ns=shop,payments&outside=0 ----
  function readHash() {
    var h = (location.hash || '').replace(/^#/, '');
    var params = {};
    h.split('&').forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf('=');
      var k = i < 0 ? kv : kv.slice(0, i);
      params[decodeURIComponent(k)] = i < 0 ? '' : decodeURIComponent(kv.slice(i + 1));
    });
    state.ns = {};
    if (params.ns === undefined || params.ns === 'all') {
      namespaces.forEach(function (ns) { state.ns[ns] = true; });
    } else {
      params.ns.split(',').forEach(function (ns) { if (namespaces.indexOf(ns) >= 0) state.ns[ns] = true; });
    }
    state.outside = params.outside !== '0' && params.outside !== 'false';
    state.sel = null;
    if (params.node && byId[params.node]) state.sel = { node: params.node };
    if (params.sel) {
      var ft = params.sel.split(',');
      if (ft.length === 2 && connOf[ft[0] + '\n' + ft[1]]) state.sel = { from: ft[0], to: ft[1] };
    }
  }
  function writeHash() {
    var sel = namespaces.filter(function (ns) { return state.ns[ns]; });
    var parts = [];
    if (sel.length !== namespaces.length) parts.push('ns=' + sel.map(encodeURIComponent).join(','));
    if (!state.outside) parts.push('outside=0');
    if (state.sel && state.sel.node) parts.push('node=' + encodeURIComponent(state.sel.node));
    if (state.sel && state.sel.from) parts.push('sel=' + encodeURIComponent(state.sel.from) + ',' + encodeURIComponent(state.sel.to));
    var url = location.pathname + location.search + (parts.length ? '#' + parts.join('&') : '');
    try { history.replaceState(null, '', url); } catch (e) { location.hash = parts.join('&'); }
  }

  // ---- helpers ----
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var svg = document.getElementById('graph');
  var SVGNS = svg.namespaceURI;
  function sv(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function visible(g) { return g.kind === 'workload' ? !!state.ns[g.namespace] : state.outside; }
  function short(p) { return p.summary.replace(/ \[HTTP .*\]$/, ''); }
  function l7note(p) {
    if (!p.proxied) return '';
    if (p.http.length === 0) return 'HTTP any request';
    if (p.http.length === 1 && p.http[0].length <= 22) return 'HTTP ' + p.http[0];
    return 'HTTP ' + p.http.length + ' rules';
  }
  function portLines(c) {
    var out = [];
    c.ports.forEach(function (p) {
      if (!p.proxied) { out.push(p.summary); return; }
      if (p.http.length === 0) { out.push(short(p) + ' via the HTTP proxy: every request passes'); return; }
      out.push(short(p) + ' via the HTTP proxy, only:');
      p.http.forEach(function (r) { out.push('    ' + r); });
    });
    return out;
  }
  function tooltip(c) { return byId[c.from].label + ' \u2192 ' + byId[c.to].label + '\n' + portLines(c).join('\n'); }
  function breadth(c) {
    var n = 0;
    c.ports.forEach(function (p) { n += p.protocol === 'ANY' ? 1e9 : p.to - p.from + 1; });
    return n;
  }
  function level(c) {
    var n = breadth(c);
    if (n >= 1e9) return 5;
    if (n >= 1000) return 4;
    if (n >= 10) return 3;
    if (n >= 2) return 2;
    return 1;
  }
  function proxied(c) { return c.ports.some(function (p) { return p.proxied; }); }
  function isAny(c) { return c.ports.some(function (p) { return p.protocol === 'ANY'; }); }

  // ---- filter bar ----
  function buildFilter() {
    var boxes = document.getElementById('ns-boxes');
    namespaces.forEach(function (ns) {
      var cb = el('input', { type: 'checkbox', 'data-ns': ns });
      cb.addEventListener('change', function () { state.ns[ns] = cb.checked; writeHash(); render(); });
      var lab = el('label', { 'data-ns': ns });
      var sw = el('span', { 'class': 'swatch', style: 'background:' + nsColor(ns) });
      lab.appendChild(cb); lab.appendChild(sw); lab.appendChild(document.createTextNode(ns));
      boxes.appendChild(lab);
    });
    if (hasOutside) {
      var cb = el('input', { type: 'checkbox', id: 'outside' });
      cb.addEventListener('change', function () { state.outside = cb.checked; writeHash(); render(); });
      var lab = el('label', { 'data-ns': '' });
      lab.appendChild(cb); lab.appendChild(el('span', { 'class': 'swatch', style: 'background:#e07b24' }));
      lab.appendChild(document.createTextNode('outside the cluster'));
      document.getElementById('outside-box').appendChild(lab);
    }
    document.getElementById('ns-all').addEventListener('click', function () {
      namespaces.forEach(function (ns) { state.ns[ns] = true; }); state.outside = true; writeHash(); render();
    });
    document.getElementById('ns-none').addEventListener('click', function () {
      state.ns = {}; state.outside = false; writeHash(); render();
    });
  }
  function syncFilter() {
    Array.prototype.forEach.call(document.querySelectorAll('#filters label'), function (lab) {
      var cb = lab.querySelector('input');
      var ns = lab.getAttribute('data-ns');
      cb.checked = ns === '' ? state.outside : !!state.ns[ns];
      lab.className = cb.checked ? '' : 'off';
    });
  }

  // ---- heat-map ----
  // above this many groups the cells only show colour; the ports are in the tooltip
  var COMPACT_AT = 40;
  function renderMatrix(vis) {
    var table = document.getElementById('matrix');
    clear(table);
    var compact = vis.length > COMPACT_AT;
    table.className = 'matrix' + (compact ? ' compact' : '');
    document.getElementById('matrix-note').textContent = compact ? ' \u00b7 ' + vis.length + ' groups: hover or click a cell for its ports' : '';
    if (vis.length === 0) {
      table.appendChild(el('caption', { 'class': 'empty' }, 'No group in the selected namespaces.'));
      return;
    }
    var thead = el('thead'), hr = el('tr');
    hr.appendChild(el('th', { 'class': 'corner', scope: 'col' }, 'from \u2193 to \u2192'));
    vis.forEach(function (g) {
      var th = el('th', { 'class': 'col', scope: 'col', 'data-group': g.id, title: g.label });
      th.appendChild(el('span', { 'class': 'vlabel' }, g.label));
      th.appendChild(el('br'));
      th.appendChild(el('span', { 'class': 'swatch', style: 'background:' + groupColor(g) }));
      hr.appendChild(th);
    });
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = el('tbody');
    vis.forEach(function (src) {
      var tr = el('tr', { 'data-group': src.id });
      var th = el('th', { 'class': 'row', scope: 'row', title: src.label + ' (' + src.kind + ', identity ' + src.identity + ')' });
      th.appendChild(el('span', { 'class': 'swatch', style: 'background:' + groupColor(src) }));
      th.appendChild(document.createTextNode(src.label));
      if (src.pods.length > 1) th.appendChild(el('span', { 'class': 'kind' }, '\u00d7' + src.pods.length));
      tr.appendChild(th);
      vis.forEach(function (dst) {
        var c = connOf[src.id + '\n' + dst.id];
        var cls = 'cell' + (src.id === dst.id ? ' self' : '');
        var td = el('td', { 'data-from': src.id, 'data-to': dst.id });
        if (c) {
          cls += ' on lvl' + level(c) + (proxied(c) ? ' l7' : '');
          td.setAttribute('title', tooltip(c));
          td.setAttribute('data-summary', c.summary);
          var max = c.ports.length > 3 ? 2 : 3;
          if (!compact) c.ports.slice(0, max).forEach(function (p, i) {
            if (i > 0) td.appendChild(el('br'));
            td.appendChild(el('span', { 'class': 'port' }, short(p)));
            if (p.proxied) td.appendChild(el('span', { 'class': 'l7tag' }, l7note(p)));
          });
          if (!compact && c.ports.length > max) {
            td.appendChild(el('br'));
            td.appendChild(el('span', { 'class': 'more' }, '+' + (c.ports.length - max) + ' more'));
          }
        }
        td.className = cls;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
  }

  // ---- graph: namespaces as circles on a ring, their workloads on rings inside ----
  function layout(vis) {
    var clusters = [];
    namespaces.forEach(function (ns) {
      var members = vis.filter(function (g) { return g.kind === 'workload' && g.namespace === ns; });
      if (members.length) clusters.push({ key: ns, label: ns, members: members });
    });
    var out = vis.filter(function (g) { return g.kind !== 'workload'; });
    if (out.length) clusters.push({ key: '', label: 'outside the cluster', members: out });
    var pos = {};
    clusters.forEach(function (cl) {
      // one node in the middle; a few on a ring; many on concentric rings
      var n = cl.members.length, r = 0, spots = [];
      var longest = 0;
      cl.members.forEach(function (g) { longest = Math.max(longest, nodeLabel(g).length); });
      var spacing = Math.max(78, Math.min(150, 6.2 * longest + 16));
      if (n === 1) {
        spots.push([0, 0]);
      } else if (n * spacing / (2 * Math.PI) <= 170) {
        r = Math.max(48, n * spacing / (2 * Math.PI));
        for (var i = 0; i < n; i++) {
          var a = -Math.PI / 2 + 2 * Math.PI * i / n;
          spots.push([r * Math.cos(a), r * Math.sin(a)]);
        }
      } else {
        var placed = 0, ring = 0;
        while (placed < n) {
          var rad = 60 + 80 * ring;
          var k = Math.min(Math.max(3, Math.floor(2 * Math.PI * rad / spacing)), n - placed);
          for (var j = 0; j < k; j++) {
            var b = -Math.PI / 2 + 2 * Math.PI * j / k + ring * 0.4;
            spots.push([rad * Math.cos(b), rad * Math.sin(b)]);
          }
          placed += k; r = rad; ring++;
        }
      }
      cl.spots = spots;
      cl.radius = r + 48;
    });
    // cluster centres on a ring wide enough that neighbours do not overlap
    var gap = 34, total = 0;
    clusters.forEach(function (cl) { total += 2 * cl.radius + gap; });
    var R = 0, angle = -Math.PI / 2;
    clusters.forEach(function (cl) {
      cl.span = 2 * Math.PI * (2 * cl.radius + gap) / total;
    });
    if (clusters.length > 1) {
      clusters.forEach(function (cl, i) {
        var nx = clusters[(i + 1) % clusters.length];
        var sep = (cl.span + nx.span) / 2;
        var need = (cl.radius + nx.radius + gap) / (2 * Math.sin(Math.min(sep, Math.PI) / 2));
        if (need > R) R = need;
      });
    }
    clusters.forEach(function (cl) {
      var a = angle + cl.span / 2;
      cl.x = R * Math.cos(a); cl.y = R * Math.sin(a);
      angle += cl.span;
      cl.members.forEach(function (g, i) {
        pos[g.id] = { x: cl.x + cl.spots[i][0], y: cl.y + cl.spots[i][1], cx: cl.x, cy: cl.y };
      });
    });
    return { clusters: clusters, pos: pos };
  }

  function nodeLabel(g) {
    if (g.kind === 'workload') return g.name + (g.pods.length > 1 ? ' \u00d7' + g.pods.length : '');
    return g.kind === 'world' ? 'world' : g.label;
  }
  function nodeRadius(g) { return 10 + Math.min(8, Math.log(Math.max(1, g.pods.length)) / Math.LN2); }

  function arrowDefs() {
    var defs = sv('defs');
    [['arrow', '#7f8ba0'], ['arrow-l7', '#6a3fc9'], ['arrow-any', '#c9261a']].forEach(function (m) {
      var mk = sv('marker', { id: m[0], viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '9', markerHeight: '9', markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' });
      mk.appendChild(sv('path', { d: 'M0,0 L10,5 L0,10 z', fill: m[1] }));
      defs.appendChild(mk);
    });
    return defs;
  }
  // a slightly bent edge from a to b (a→b and b→a bend to opposite sides), between the
  // node outlines
  function curve(a, b, ra, rb) {
    var dx = b.x - a.x, dy = b.y - a.y, len = Math.sqrt(dx * dx + dy * dy) || 1;
    var bend = Math.min(40, len * 0.12);
    var mx = (a.x + b.x) / 2 - dy / len * bend, my = (a.y + b.y) / 2 + dx / len * bend;
    var sx = mx - a.x, sy = my - a.y, sl = Math.sqrt(sx * sx + sy * sy) || 1;
    var ex = b.x - mx, ey = b.y - my, elen = Math.sqrt(ex * ex + ey * ey) || 1;
    var x1 = a.x + sx / sl * ra, y1 = a.y + sy / sl * ra;
    var x2 = b.x - ex / elen * (rb + 2), y2 = b.y - ey / elen * (rb + 2);
    return 'M' + x1.toFixed(1) + ',' + y1.toFixed(1) + ' Q' + mx.toFixed(1) + ',' + my.toFixed(1) + ' ' + x2.toFixed(1) + ',' + y2.toFixed(1);
  }
  // a self-loop on a node of radius r, pointing in direction th
  function loop(a, r, th) {
    var p = function (ang, d) { return (a.x + d * Math.cos(ang)).toFixed(1) + ',' + (a.y + d * Math.sin(ang)).toFixed(1); };
    return 'M' + p(th - 0.45, r) + ' C' + p(th - 0.7, r * 3.4) + ' ' + p(th + 0.7, r * 3.4) + ' ' + p(th + 0.45, r + 3);
  }

  // Too many groups or connections for a readable drawing: one node per namespace (and per
  // outside peer), one edge per pair carrying the number of connections; a click on a
  // namespace shows only it.
  var GRAPH_MAX_GROUPS = 150, GRAPH_MAX_EDGES = 2500;
  function renderNamespaceGraph(vis, visConns) {
    var keyOf = function (g) { return g.kind === 'workload' ? 'ns:' + g.namespace : g.id; };
    var nameOf = function (g) { return g.kind === 'workload' ? g.namespace : g.kind === 'world' ? 'world' : g.label; };
    var nodes = [], byKey = {};
    vis.forEach(function (g) {
      var k = keyOf(g);
      if (!byKey[k]) { byKey[k] = { key: k, g: g, count: 0 }; nodes.push(byKey[k]); }
      byKey[k].count++;
    });
    var edges = {}, order = [];
    visConns.forEach(function (c) {
      var f = keyOf(byId[c.from]), t = keyOf(byId[c.to]), k = f + '\n' + t;
      if (!edges[k]) { edges[k] = { from: f, to: t, n: 0, l7: false, any: false }; order.push(k); }
      edges[k].n++;
      edges[k].l7 = edges[k].l7 || proxied(c);
      edges[k].any = edges[k].any || isAny(c);
    });
    var R = Math.max(120, nodes.length * 70 / (2 * Math.PI)), pos = {};
    nodes.forEach(function (n, i) {
      var a = -Math.PI / 2 + 2 * Math.PI * i / nodes.length;
      pos[n.key] = { x: R * Math.cos(a), y: R * Math.sin(a), th: a, r: n.g.kind === 'workload' ? 8 + Math.min(14, 2.5 * Math.sqrt(n.count)) : 10 };
    });
    var pad = 100;
    svg.setAttribute('viewBox', [-R - pad, -R - pad, 2 * (R + pad), 2 * (R + pad)].map(function (v) { return v.toFixed(1); }).join(' '));
    svg.appendChild(arrowDefs());
    var note = sv('text', { 'class': 'cluster-label', x: 0, y: (-R - pad + 16).toFixed(1) });
    note.textContent = vis.length + ' groups: one node per namespace \u2014 click one to see its workloads';
    svg.appendChild(note);
    var ge = sv('g', { 'class': 'edges' });
    order.forEach(function (k) {
      var e = edges[k], a = pos[e.from], b = pos[e.to];
      var d = e.from === e.to ? loop(a, a.r, a.th) : curve(a, b, a.r, b.r);
      var path = sv('path', {
        'class': 'edge' + (e.l7 ? ' l7' : '') + (e.any ? ' any' : ''), d: d, 'data-from': e.from, 'data-to': e.to,
        'marker-end': 'url(#' + (e.l7 ? 'arrow-l7' : e.any ? 'arrow-any' : 'arrow') + ')',
        'stroke-width': Math.min(6, 1 + 0.6 * Math.log(e.n) / Math.LN2).toFixed(2)
      });
      var title = sv('title');
      title.textContent = nameOf(byKey[e.from].g) + ' \u2192 ' + nameOf(byKey[e.to].g) + ': ' + e.n + ' connection' + (e.n === 1 ? '' : 's');
      path.appendChild(title);
      ge.appendChild(path);
    });
    svg.appendChild(ge);
    var gn = sv('g', { 'class': 'nodes' });
    nodes.forEach(function (n) {
      var p = pos[n.key], g = n.g, isNS = g.kind === 'workload';
      var node = sv('g', { 'class': 'nsnode', 'data-id': n.key, transform: 'translate(' + p.x.toFixed(1) + ',' + p.y.toFixed(1) + ')' });
      var shape = isNS ? sv('circle', { r: p.r.toFixed(1) }) : sv('rect', { x: -p.r, y: -p.r, width: 2 * p.r, height: 2 * p.r, rx: 3 });
      shape.setAttribute('class', 'shape');
      shape.setAttribute('fill', groupColor(g));
      node.appendChild(shape);
      var cos = Math.cos(p.th);
      var label = sv('text', {
        x: (cos * (p.r + 6)).toFixed(1), y: (Math.sin(p.th) * (p.r + 6) + 4).toFixed(1),
        style: 'text-anchor:' + (Math.abs(cos) < 0.3 ? 'middle' : cos > 0 ? 'start' : 'end')
      });
      label.textContent = nameOf(g) + (isNS ? ' (' + n.count + ')' : '');
      node.appendChild(label);
      var title = sv('title');
      title.textContent = isNS ? 'namespace ' + g.namespace + ': ' + n.count + ' groups' : g.label;
      node.appendChild(title);
      if (isNS) {
        node.addEventListener('click', function (ev) {
          ev.stopPropagation();
          state.ns = {};
          state.ns[g.namespace] = true;
          writeHash();
          render();
        });
      }
      gn.appendChild(node);
    });
    svg.appendChild(gn);
  }

  function renderGraph(vis, visConns) {
    clear(svg);
    if (vis.length === 0) { svg.setAttribute('viewBox', '0 0 400 60'); var t = sv('text', { x: 200, y: 35, 'text-anchor': 'middle', 'class': 'cluster-label' }); t.textContent = 'No group in the selected namespaces.'; svg.appendChild(t); return; }
    if (vis.length > GRAPH_MAX_GROUPS || visConns.length > GRAPH_MAX_EDGES) { renderNamespaceGraph(vis, visConns); return; }
    var L = layout(vis), pos = L.pos;

    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    L.clusters.forEach(function (cl) {
      minX = Math.min(minX, cl.x - cl.radius); maxX = Math.max(maxX, cl.x + cl.radius);
      minY = Math.min(minY, cl.y - cl.radius - 18); maxY = Math.max(maxY, cl.y + cl.radius);
    });
    var pad = 14;
    svg.setAttribute('viewBox', [minX - pad, minY - pad, maxX - minX + 2 * pad, maxY - minY + 2 * pad].map(function (v) { return v.toFixed(1); }).join(' '));
    svg.appendChild(arrowDefs());
    var gc = sv('g', { 'class': 'clusters' });
    L.clusters.forEach(function (cl) {
      var g = sv('g', { 'class': 'cluster-group', 'data-ns': cl.key });
      var c = sv('circle', { 'class': 'cluster', cx: cl.x.toFixed(1), cy: cl.y.toFixed(1), r: cl.radius.toFixed(1) });
      if (cl.key) c.setAttribute('style', 'stroke:' + nsColor(cl.key));
      g.appendChild(c);
      var t = sv('text', { 'class': 'cluster-label', x: cl.x.toFixed(1), y: (cl.y - cl.radius - 5).toFixed(1) });
      t.textContent = cl.label;
      g.appendChild(t);
      gc.appendChild(g);
    });
    svg.appendChild(gc);
    var ge = sv('g', { 'class': 'edges' });
    visConns.forEach(function (c) {
      var a = pos[c.from], b = pos[c.to], ra = nodeRadius(byId[c.from]), rb = nodeRadius(byId[c.to]);
      var d;
      if (c.from === c.to) {
        d = loop(a, ra, (a.x === a.cx && a.y === a.cy) ? -Math.PI / 2 : Math.atan2(a.y - a.cy, a.x - a.cx));
      } else {
        d = curve(a, b, ra, rb);
      }
      var cls = 'edge' + (proxied(c) ? ' l7' : '') + (isAny(c) ? ' any' : '');
      var marker = proxied(c) ? 'arrow-l7' : isAny(c) ? 'arrow-any' : 'arrow';
      var w = [1.2, 1.4, 1.8, 2.2, 2.6][level(c) - 1];
      var path = sv('path', { 'class': cls, d: d, 'data-from': c.from, 'data-to': c.to, 'marker-end': 'url(#' + marker + ')', 'stroke-width': w });
      var title = sv('title'); title.textContent = tooltip(c); path.appendChild(title);
      path.addEventListener('click', function (ev) { ev.stopPropagation(); select({ from: c.from, to: c.to }); });
      ge.appendChild(path);
    });
    svg.appendChild(ge);
    var gn = sv('g', { 'class': 'nodes' });
    vis.forEach(function (g) {
      var p = pos[g.id], r = nodeRadius(g);
      var node = sv('g', { 'class': 'node', 'data-id': g.id, 'data-kind': g.kind, transform: 'translate(' + p.x.toFixed(1) + ',' + p.y.toFixed(1) + ')' });
      var shape;
      if (g.kind === 'workload') shape = sv('circle', { r: r });
      else if (g.kind === 'cidr' || g.kind === 'world') shape = sv('path', { d: 'M0,' + (-r - 2) + ' L' + (r + 2) + ',0 L0,' + (r + 2) + ' L' + (-r - 2) + ',0 z' });
      else shape = sv('rect', { x: -r, y: -r, width: 2 * r, height: 2 * r, rx: 3 });
      shape.setAttribute('class', 'shape');
      shape.setAttribute('fill', groupColor(g));
      node.appendChild(shape);
      var label = sv('text', { y: (r + 13).toFixed(1) });
      label.textContent = nodeLabel(g);
      node.appendChild(label);
      var title = sv('title'); title.textContent = g.label + ' (' + g.kind + ', identity ' + g.identity + ')'; node.appendChild(title);
      node.addEventListener('click', function (ev) { ev.stopPropagation(); select({ node: g.id }); });
      node.addEventListener('mouseenter', function () { highlight({ node: g.id }); });
      node.addEventListener('mouseleave', function () { highlight(state.sel); });
      gn.appendChild(node);
    });
    svg.appendChild(gn);
  }

  // ---- connection list ----
  function renderList(visConns) {
    var t = document.getElementById('connections');
    clear(t);
    if (visConns.length === 0) { t.appendChild(el('caption', { 'class': 'empty' }, 'No allowed connection between the shown groups.')); return; }
    var hr = el('tr');
    ['From', 'To', 'Ports'].forEach(function (h) { hr.appendChild(el('th', { scope: 'col' }, h)); });
    var thead = el('thead'); thead.appendChild(hr); t.appendChild(thead);
    var tb = el('tbody');
    visConns.forEach(function (c) {
      var tr = el('tr', { 'data-from': c.from, 'data-to': c.to });
      tr.appendChild(el('td', null, byId[c.from].label));
      tr.appendChild(el('td', null, byId[c.to].label));
      var td = el('td');
      td.appendChild(portList(c));
      tr.appendChild(td);
      tr.addEventListener('click', function () { select({ from: c.from, to: c.to }); });
      tb.appendChild(tr);
    });
    t.appendChild(tb);
  }
  function portList(c) {
    var ul = el('ul');
    c.ports.forEach(function (p) {
      var li = el('li');
      li.appendChild(el('code', null, short(p)));
      if (p.proxied) {
        li.appendChild(el('span', { 'class': 'l7tag' }, p.http.length ? 'HTTP' : 'HTTP any request'));
        if (p.http.length) {
          var rules = el('ul');
          p.http.forEach(function (r) { rules.appendChild(el('li', null)).appendChild(el('code', null, r)); });
          li.appendChild(rules);
        }
      }
      ul.appendChild(li);
    });
    return ul;
  }

  // ---- selection and details ----
  function highlight(sel) {
    var on = {};
    Array.prototype.forEach.call(svg.querySelectorAll('.on'), function (e) { e.classList.remove('on'); });
    if (!sel) { svg.classList.remove('hl'); return; }
    svg.classList.add('hl');
    Array.prototype.forEach.call(svg.querySelectorAll('.edge'), function (e) {
      var f = e.getAttribute('data-from'), t = e.getAttribute('data-to');
      if (sel.node ? (f === sel.node || t === sel.node) : (f === sel.from && t === sel.to)) {
        e.classList.add('on'); on[f] = on[t] = true;
      }
    });
    if (sel.node) on[sel.node] = true;
    Array.prototype.forEach.call(svg.querySelectorAll('.node'), function (n) {
      if (on[n.getAttribute('data-id')]) n.classList.add('on');
    });
  }
  function select(sel, keepURL) {
    state.sel = sel;
    if (!keepURL) writeHash();
    highlight(sel);
    Array.prototype.forEach.call(document.querySelectorAll('.sel'), function (e) { e.classList.remove('sel'); });
    var body = document.getElementById('details-body');
    clear(body);
    body.className = '';
    if (!sel) { body.className = 'muted'; body.textContent = 'Click a matrix cell, a graph edge or a node.'; return; }
    if (sel.node) {
      var g = byId[sel.node];
      var dl = el('dl');
      var add = function (k, v) { dl.appendChild(el('dt', null, k)); var dd = el('dd'); if (typeof v === 'string') dd.textContent = v; else dd.appendChild(v); dl.appendChild(dd); };
      add('group', g.label);
      add('kind', g.kind);
      add('identity', String(g.identity));
      if (g.pods.length) add(g.pods.length === 1 ? 'pod' : g.pods.length + ' pods', g.pods.slice(0, 20).join(', ') + (g.pods.length > 20 ? ', \u2026' : ''));
      if (g.prefix) add('prefix', g.prefix);
      if (g.except.length) add('except', g.except.join(', '));
      var ins = conns.filter(function (c) { return c.to === g.id; }).length, outs = conns.filter(function (c) { return c.from === g.id; }).length;
      add('connections', ins + ' in, ' + outs + ' out');
      body.appendChild(dl);
      Array.prototype.forEach.call(document.querySelectorAll('#matrix th[data-group], #matrix tr[data-group] > th'), function (e) {
        var id = e.getAttribute('data-group') || e.parentNode.getAttribute('data-group');
        if (id === g.id) e.classList.add('sel');
      });
      return;
    }
    var c = connOf[sel.from + '\n' + sel.to];
    body.appendChild(el('p', null, byId[sel.from].label + ' \u2192 ' + byId[sel.to].label));
    body.appendChild(portList(c));
    Array.prototype.forEach.call(document.querySelectorAll('[data-from][data-to]'), function (e) {
      if (e.tagName !== 'path' && e.getAttribute('data-from') === sel.from && e.getAttribute('data-to') === sel.to) e.classList.add('sel');
    });
  }

  // ---- render ----
  function render() {
    syncFilter();
    var vis = groups.filter(visible);
    var shownIds = {};
    vis.forEach(function (g) { shownIds[g.id] = true; });
    var visConns = conns.filter(function (c) { return shownIds[c.from] && shownIds[c.to]; });
    if (state.sel && !(state.sel.node ? shownIds[state.sel.node] : shownIds[state.sel.from] && shownIds[state.sel.to])) state.sel = null;
    renderMatrix(vis);
    renderGraph(vis, visConns);
    renderList(visConns);
    select(state.sel, true);
    document.getElementById('shown').textContent = 'showing ' + vis.length + ' of ' + groups.length + ' groups, ' + visConns.length + ' of ' + conns.length + ' connections';
    document.body.setAttribute('data-shown-groups', String(vis.length));
    document.body.setAttribute('data-shown-connections', String(visConns.length));
  }

  svg.addEventListener('click', function () { select(null); });
  document.getElementById('matrix').addEventListener('click', function (ev) {
    var td = ev.target.closest ? ev.target.closest('td.on') : null;
    if (td) select({ from: td.getAttribute('data-from'), to: td.getAttribute('data-to') });
  });
  window.addEventListener('hashchange', function () { readHash(); render(); });
  readHash();
  buildFilter();
  render();
  document.body.setAttribute('data-ready', 'true');
})();
