// The report page's script, inlined into report.html: sortable and filterable tables.
// Plain JavaScript, nothing fetched. When it has run, <body data-ready="1">.
(function () {
  "use strict";
  var SCALE = { k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

  // A cell's sort key: its leading number (thousands commas dropped, a k/M/G/T suffix
  // applied), or null for text and blanks.
  function cellNumber(text) {
    var t = text.replace(/,/g, "").trim();
    var m = t.match(/^[-+\u2212]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?/i);
    if (!m) return null;
    var value = parseFloat(m[0].replace("\u2212", "-"));
    var rest = t.slice(m[0].length).trim();
    if (rest.length && SCALE[rest.charAt(0)] && (rest.length === 1 || rest.charAt(1) === " ")) {
      value *= SCALE[rest.charAt(0)];
    }
    return value;
  }

  function compare(a, b) {
    // numbers before text, text before blanks
    if (a.blank !== b.blank) return a.blank ? 1 : -1;
    if ((a.num === null) !== (b.num === null)) return a.num === null ? 1 : -1;
    if (a.num !== null && a.num !== b.num) return a.num - b.num;
    return a.text < b.text ? -1 : a.text > b.text ? 1 : 0;
  }

  function sortBy(table, column) {
    var head = table.tHead.rows[0].cells;
    var th = head[column];
    var direction = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows).map(function (row, i) {
      var text = row.cells[column] ? row.cells[column].textContent.trim() : "";
      return { row: row, i: i, key: { blank: text === "", num: cellNumber(text), text: text.toLowerCase() } };
    });
    rows.sort(function (x, y) {
      var c = compare(x.key, y.key);
      if (x.key.blank || y.key.blank) return c || x.i - y.i;
      return direction * c || x.i - y.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
    for (var i = 0; i < head.length; i++) head[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", direction === 1 ? "ascending" : "descending");
  }

  function addFilter(table) {
    var input = document.createElement("input");
    input.type = "search";
    input.className = "filter";
    input.placeholder = "filter rows (all words must match)";
    input.setAttribute("aria-label", "filter the rows of the table below");
    var wrap = table.parentNode;
    wrap.parentNode.insertBefore(input, wrap);
    input.addEventListener("input", function () {
      var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      var rows = table.tBodies[0].rows;
      for (var i = 0; i < rows.length; i++) {
        var text = rows[i].textContent.toLowerCase();
        var shown = words.every(function (w) { return text.indexOf(w) >= 0; });
        rows[i].style.display = shown ? "" : "none";
      }
    });
  }

  var tables = document.querySelectorAll("table.data");
  for (var t = 0; t < tables.length; t++) {
    (function (table) {
      var head = table.tHead.rows[0].cells;
      for (var c = 0; c < head.length; c++) {
        (function (column) {
          head[column].title = "sort by this column (click again to reverse)";
          head[column].addEventListener("click", function () { sortBy(table, column); });
        })(c);
      }
      if (table.hasAttribute("data-filter")) addFilter(table);
    })(tables[t]);
  }
  document.body.setAttribute("data-ready", "1");
})();
