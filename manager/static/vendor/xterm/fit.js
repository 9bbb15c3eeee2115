/* xterm.js, Debian node-xterm 3.8.1+~cs0.9.0-1+deb12u1, MIT (see LICENSE); bundled for the browser by scripts/vendor_xterm.py */
(function () {
  var defs = {};
  defs['addons/fit/fit'] = function (exports, require, module) {
Object.defineProperty(exports, "__esModule", { value: true });
exports.apply = exports.fit = exports.proposeGeometry = void 0;
function proposeGeometry(term) {
    if (!term.element.parentElement) {
        return null;
    }
    var parentElementStyle = window.getComputedStyle(term.element.parentElement);
    var parentElementHeight = parseInt(parentElementStyle.getPropertyValue('height'));
    var parentElementWidth = Math.max(0, parseInt(parentElementStyle.getPropertyValue('width')));
    var elementStyle = window.getComputedStyle(term.element);
    var elementPadding = {
        top: parseInt(elementStyle.getPropertyValue('padding-top')),
        bottom: parseInt(elementStyle.getPropertyValue('padding-bottom')),
        right: parseInt(elementStyle.getPropertyValue('padding-right')),
        left: parseInt(elementStyle.getPropertyValue('padding-left'))
    };
    var elementPaddingVer = elementPadding.top + elementPadding.bottom;
    var elementPaddingHor = elementPadding.right + elementPadding.left;
    var availableHeight = parentElementHeight - elementPaddingVer;
    var availableWidth = parentElementWidth - elementPaddingHor - term._core.viewport.scrollBarWidth;
    var geometry = {
        cols: Math.floor(availableWidth / term._core.renderer.dimensions.actualCellWidth),
        rows: Math.floor(availableHeight / term._core.renderer.dimensions.actualCellHeight)
    };
    return geometry;
}
exports.proposeGeometry = proposeGeometry;
function fit(term) {
    var geometry = proposeGeometry(term);
    if (geometry) {
        if (term.rows !== geometry.rows || term.cols !== geometry.cols) {
            term._core.renderer.clear();
            term.resize(geometry.cols, geometry.rows);
        }
    }
}
exports.fit = fit;
function apply(terminalConstructor) {
    terminalConstructor.prototype.proposeGeometry = function () {
        return proposeGeometry(this);
    };
    terminalConstructor.prototype.fit = function () {
        fit(this);
    };
}
exports.apply = apply;

  };
  var cache = {};
  function load(id) {
    if (cache[id]) { return cache[id].exports; }
    var module = { exports: {} };
    cache[id] = module;
    defs[id].call(module.exports, module.exports, function (rel) {
      return load(resolve(id, rel));
    }, module);
    return module.exports;
  }
  function resolve(from, rel) {
    var parts = from.split("/").slice(0, -1);
    rel.split("/").forEach(function (p) {
      if (p === "..") { parts.pop(); } else if (p !== ".") { parts.push(p); }
    });
    return parts.join("/");
  }
  window['fit'] = load('addons/fit/fit');
}());
