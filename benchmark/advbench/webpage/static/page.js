(function () {
  "use strict";
  var table = document.getElementById("results-table");
  if (!table) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function value(row, i, numeric) {
    var cell = row.cells[i];
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (!numeric) return raw;
    var x = raw === "" ? NaN : Number(raw);
    return x;
  }
  function sortBy(i) {
    var th = heads[i], numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current === "descending" ? "ascending" : current === "ascending" ? "descending"
      : (numeric ? "descending" : "ascending");
    heads.forEach(function (h) { if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var sorted = rows.slice().sort(function (a, b) {
      var x = value(a, i, numeric), y = value(b, i, numeric), c;
      if (numeric) {
        var nx = isNaN(x), ny = isNaN(y);
        c = nx && ny ? 0 : nx ? 2 : ny ? -2 : sign * (x - y);
        if (nx !== ny) return nx ? 1 : -1;
      } else {
        c = sign * collator.compare(x, y);
      }
      return c || (Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i")));
    });
    sorted.forEach(function (r) { body.appendChild(r); });
  }
  heads.forEach(function (th, i) {
    var button = th.querySelector("button");
    if (button) button.addEventListener("click", function () { sortBy(i); });
  });
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var shown = document.getElementById("shown");
  function filter() {
    var n = 0;
    rows.forEach(function (r) {
      var ok = selects.every(function (s) {
        return s.value === "" || r.getAttribute("data-" + s.getAttribute("data-filter")) === s.value;
      });
      r.hidden = !ok;
      if (ok) n += 1;
    });
    shown.textContent = n + " of " + rows.length + " rows shown";
  }
  selects.forEach(function (s) { s.addEventListener("change", filter); });
  var reset = document.getElementById("reset-filters");
  if (reset) reset.addEventListener("click", function () {
    selects.forEach(function (s) { s.value = ""; });
    filter();
  });
  function openTarget() {
    var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openTarget);
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) return;
    var code = document.getElementById(button.getAttribute("data-for"));
    var text = code.textContent;
    function done() { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy"; }, 1500); }
    function fallback() {
      var range = document.createRange(); range.selectNodeContents(code);
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: copy by hand */ }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  });
  filter();
  openTarget();
})();
