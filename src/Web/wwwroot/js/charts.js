// Charts of the portal, drawn with Chart.js (bundled from npm into wwwroot/lib at build time).
// loomCharts.render(canvasId, config) draws or redraws one chart; the config is Chart.js's own.
window.loomCharts = (() => {
    const charts = new Map();
    return {
        render(id, config) {
            const canvas = document.getElementById(id);
            if (!canvas) return false;
            charts.get(id)?.destroy();
            charts.set(id, new Chart(canvas, config));
            return true;
        },
        destroy(id) {
            charts.get(id)?.destroy();
            charts.delete(id);
        },
    };
})();
