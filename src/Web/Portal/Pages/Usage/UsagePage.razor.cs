using Loom.Api.Usage;
using Loom.Web.Portal.Usage;
using Microsoft.AspNetCore.Components;
using Microsoft.JSInterop;

namespace Loom.Web.Portal.Pages.Usage;

/// <summary>Usage charts over a date range, from the same per-day, per-model query as GET /v1/usage.</summary>
public sealed partial class UsagePage : ComponentBase
{
    [Inject] private UsageService Service { get; set; } = default!;
    [Inject] private TimeProvider Clock { get; set; } = default!;
    [Inject] private IJSRuntime Js { get; set; } = default!;

    private DateOnly from, to, shownFrom, shownTo;
    private string? fromError;
    private UsageSummary? summary;
    private bool drawPending;

    private bool Interactive => RendererInfo.IsInteractive;

    private static string Iso(DateOnly d) => d.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    protected override async Task OnInitializedAsync()
    {
        to = DateOnly.FromDateTime(Clock.GetUtcNow().UtcDateTime);
        from = to.AddDays(-29);
        await LoadAsync();
    }

    private async Task LoadAsync()
    {
        fromError = null;
        if (from > to)
        {
            fromError = "“From” must not be after “To”.";
            return;
        }
        var start = new DateTimeOffset(from.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        var end = new DateTimeOffset(to.AddDays(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero);
        if (end - start > UsageService.MaxRange)
        {
            fromError = "The range may span at most 366 days.";
            return;
        }
        summary = UsageSummary.Of(await Service.GetAsync(start, end, CancellationToken.None), from, to);
        (shownFrom, shownTo) = (from, to);
        drawPending = true;
    }

    protected override async Task OnAfterRenderAsync(bool firstRender)
    {
        if (!drawPending || !Interactive || summary is null) return;
        drawPending = false;
        if (summary.Models.Count == 0) return;
        await Js.InvokeAsync<bool>("loomCharts.render", "usage-daily", summary.DailyChart());
        await Js.InvokeAsync<bool>("loomCharts.render", "usage-models", summary.ModelChart());
    }
}
