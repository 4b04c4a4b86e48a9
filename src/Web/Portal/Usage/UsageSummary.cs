using System.Globalization;
using Loom.Api.Usage;

namespace Loom.Web.Portal.Usage;

/// <summary>Totals of one model over a range.</summary>
public sealed record ModelUsage(string Model, long Requests, long PromptTokens, long CompletionTokens)
{
    public long TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>The usage page's figures: totals, per model, and tokens per day per model (every day of the range, zeros included).</summary>
public sealed record UsageSummary(IReadOnlyList<string> Days, IReadOnlyList<ModelUsage> Models, IReadOnlyDictionary<string, long[]> TokensPerDay)
{
    public long Requests => Models.Sum(m => m.Requests);
    public long PromptTokens => Models.Sum(m => m.PromptTokens);
    public long CompletionTokens => Models.Sum(m => m.CompletionTokens);
    public long TotalTokens => PromptTokens + CompletionTokens;

    /// <summary>Days <paramref name="from"/> to <paramref name="to"/>, both included.</summary>
    public static UsageSummary Of(IReadOnlyList<UsageBucket> buckets, DateOnly from, DateOnly to)
    {
        var days = new List<string>();
        for (var d = from; d <= to; d = d.AddDays(1)) days.Add(d.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
        var index = days.Select((d, i) => (d, i)).ToDictionary(x => x.d, x => x.i);
        var models = buckets.GroupBy(b => b.Model)
            .Select(g => new ModelUsage(g.Key, g.Sum(b => (long)b.Requests), g.Sum(b => b.PromptTokens), g.Sum(b => b.CompletionTokens)))
            .OrderByDescending(m => m.TotalTokens).ThenBy(m => m.Model, StringComparer.Ordinal).ToList();
        var perDay = models.ToDictionary(m => m.Model, _ => new long[days.Count]);
        foreach (var b in buckets)
            if (index.TryGetValue(b.Date, out var i)) perDay[b.Model][i] += b.TotalTokens;
        return new UsageSummary(days, models, perDay);
    }

    private static readonly string[] Palette = ["#3552d4", "#e08a1e", "#2e9e6a", "#c2417a", "#7a5af0", "#8a8f99", "#1aa3b8", "#b8860b"];

    /// <summary>Chart.js config: stacked bars of tokens per day, one dataset per model.</summary>
    public object DailyChart() => new
    {
        type = "bar",
        data = new
        {
            labels = Days,
            datasets = Models.Select((m, i) => new { label = m.Model, data = TokensPerDay[m.Model], backgroundColor = Palette[i % Palette.Length] }).ToArray(),
        },
        options = new
        {
            responsive = true, maintainAspectRatio = false, animation = false,
            scales = new { x = new { stacked = true }, y = new { stacked = true, beginAtZero = true, title = new { display = true, text = "tokens" } } },
            plugins = new { legend = new { position = "bottom" } },
        },
    };

    /// <summary>Chart.js config: horizontal bars of prompt and completion tokens per model.</summary>
    public object ModelChart() => new
    {
        type = "bar",
        data = new
        {
            labels = Models.Select(m => m.Model).ToArray(),
            datasets = new object[]
            {
                new { label = "prompt tokens", data = Models.Select(m => m.PromptTokens).ToArray(), backgroundColor = Palette[0] },
                new { label = "completion tokens", data = Models.Select(m => m.CompletionTokens).ToArray(), backgroundColor = Palette[1] },
            },
        },
        options = new
        {
            indexAxis = "y", responsive = true, maintainAspectRatio = false, animation = false,
            scales = new { x = new { stacked = true, beginAtZero = true }, y = new { stacked = true } },
            plugins = new { legend = new { position = "bottom" } },
        },
    };
}
