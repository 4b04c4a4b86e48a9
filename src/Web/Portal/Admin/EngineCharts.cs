using System.Globalization;

namespace Loom.Web.Portal.Admin;

/// <summary>Chart.js configs of the engine's time series (the admin engine page).</summary>
public static class EngineCharts
{
    private static readonly string[] Palette = ["#3552d4", "#e08a1e", "#2e9e6a", "#c2417a", "#7a5af0", "#1aa3b8", "#b8860b", "#8a8f99"];
    private const int MaxTenantLines = 8;

    private static string[] Labels(IReadOnlyList<EngineSample> s) =>
        s.Select(x => x.At.UtcDateTime.ToString("HH:mm:ss", CultureInfo.InvariantCulture)).ToArray();

    private static object Options(string yTitle, bool stacked) => new
    {
        responsive = true, maintainAspectRatio = false, animation = false,
        interaction = new { mode = "index", intersect = false },
        elements = new { point = new { radius = 0 } },
        scales = new
        {
            x = new { ticks = new { maxTicksLimit = 8 } },
            y = new { stacked, beginAtZero = true, title = new { display = true, text = yTitle } },
        },
        plugins = new { legend = new { position = "bottom" } },
    };

    private static object Line(string label, IEnumerable<double> data, string color, bool fill) =>
        new { label, data = data.ToArray(), borderColor = color, backgroundColor = color + (fill ? "cc" : "33"), fill = fill ? "stack" : (object)false, borderWidth = 1.5 };

    /// <summary>Pool pages by use, stacked: KV cache, adapters, training, free.</summary>
    public static object Pool(IReadOnlyList<EngineSample> s) => new
    {
        type = "line",
        data = new
        {
            labels = Labels(s),
            datasets = new[]
            {
                Line("KV cache", s.Select(x => (double)x.KvPages), "#3552d4", true),
                Line("adapters", s.Select(x => (double)x.AdapterPages), "#e08a1e", true),
                Line("training", s.Select(x => (double)x.TrainingPages), "#2e9e6a", true),
                Line("cached prefixes", s.Select(x => (double)x.CachedPages), "#8a5cc7", true),
                Line("free", s.Select(x => (double)x.FreePages), "#b9c0cc", true),
            },
        },
        options = Options("pages", stacked: true),
    };

    /// <summary>Sequences in the last forward pass, running and waiting (the queue).</summary>
    public static object Batch(IReadOnlyList<EngineSample> s) => new
    {
        type = "line",
        data = new
        {
            labels = Labels(s),
            datasets = new[]
            {
                Line("batch size", s.Select(x => (double)x.BatchSequences), Palette[0], false),
                Line("running", s.Select(x => (double)x.Running), Palette[2], false),
                Line("queue length", s.Select(x => (double)x.Waiting), Palette[3], false),
            },
        },
        options = Options("sequences", stacked: false),
    };

    /// <summary>Each tenant's virtual token counter (the most served first, at most eight lines).</summary>
    public static object Tenants(IReadOnlyList<EngineSample> s, Func<string, string> nameOf)
    {
        var last = s.Count == 0 ? new Dictionary<string, double>() : s[^1].TenantCounters;
        var tenants = s.SelectMany(x => x.TenantCounters.Keys).Distinct(StringComparer.Ordinal)
            .OrderByDescending(id => last.GetValueOrDefault(id)).ThenBy(id => id, StringComparer.Ordinal).Take(MaxTenantLines).ToList();
        return new
        {
            type = "line",
            data = new
            {
                labels = Labels(s),
                datasets = tenants.Select((id, i) => Line(nameOf(id), s.Select(x => x.TenantCounters.GetValueOrDefault(id)), Palette[i % Palette.Length], false)).ToArray(),
            },
            options = Options("virtual tokens", stacked: false),
        };
    }
}
