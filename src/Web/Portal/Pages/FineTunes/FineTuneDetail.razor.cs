using System.Globalization;
using System.Text.Json;
using Loom.Api.Errors;
using Loom.Api.FineTuning;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Jobs.Events;
using Loom.Web.Portal.FineTunes;
using Microsoft.AspNetCore.Components;
using Microsoft.EntityFrameworkCore;
using Microsoft.JSInterop;

namespace Loom.Web.Portal.Pages.FineTunes;

/// <summary>
/// One fine-tuning job, live. The browser connects to the JobsHub itself (wwwroot/js/job-events.js, started here
/// through JS interop): it draws the loss chart and hands each event, once and in order, to <see cref="OnEvents"/>,
/// which updates the stats and the event log and re-reads the job's row (status, step, ETA) and checkpoints. Cancel,
/// pause and resume go through <see cref="FineTuneService"/> as the API's do.
/// </summary>
public sealed partial class FineTuneDetail : ComponentBase, IAsyncDisposable
{
    internal const int MaxLog = 200;
    private static readonly TimeSpan ControlWait = TimeSpan.FromSeconds(5);

    [Parameter] public string Id { get; set; } = "";

    [Inject] private IServiceScopeFactory Scopes { get; set; } = default!;
    [Inject] private Loom.Data.Tenancy.TenantContext Tenant { get; set; } = default!;
    [Inject] private Loom.Data.Audit.AuditActor Actor { get; set; } = default!;
    [Inject] private IJSRuntime Js { get; set; } = default!;
    [Inject] private ILogger<FineTuneDetail> Logger { get; set; } = default!;

    private sealed record LogLine(long Seq, DateTimeOffset At, string Kind, string Level, string Message);

    private sealed record Metrics(int Step, int? Epoch, double? TrainLoss, double? ValidLoss, double? LearningRate, double? TokensPerSecond, long? TrainedTokens);

    private TenantScope? scope;
    private FineTuneService Service => scope!.Get<FineTuneService>();
    private PlatformDbContext Db => scope!.Get<PlatformDbContext>();

    private FineTuneJob? job;
    private List<FineTuneCheckpoint> checkpoints = [];
    private string modelName = "";
    private bool loaded;
    private readonly List<LogLine> log = [];
    private long eventCount;
    private Metrics? latest;
    private string connection = "connecting";
    private string? actionError;
    private bool busy, confirmingCancel;

    // One database operation at a time: events arrive while a cancel waits for the run.
    private readonly SemaphoreSlim dbGate = new(1, 1);
    private bool reloading, reloadAgain, checkpointsStale;
    private DotNetObjectReference<FineTuneDetail>? self;
    private IJSObjectReference? module, feed;
    private bool disposed;

    private bool Interactive => RendererInfo.IsInteractive;
    private int ShownStep => Math.Max(job?.Step ?? 0, latest?.Step ?? 0);

    private string ConnectionText => connection switch
    {
        "live" => "Live",
        "reconnecting" => "Reconnecting…",
        "error" => "Live updates failed; reload the page",
        _ => "Connecting…",
    };

    private string ProgressText
    {
        get
        {
            if (job is null) return "";
            if (job.TotalSteps == 0) return job.Status == FineTuneStatus.Running ? "starting" : job.Status.Replace('_', ' ');
            var share = (double)ShownStep / job.TotalSteps;
            var text = (share * 100).ToString("0", CultureInfo.InvariantCulture) + "%";
            if (!FineTuneStatus.IsFinal(job.Status) && job.EstimatedFinish is { } eta)
            {
                var left = eta - DateTimeOffset.UtcNow;
                text += left <= TimeSpan.Zero ? " · finishing" : $" · about {Duration(left)} left (ETA {eta.UtcDateTime:HH:mm:ss} UTC)";
            }
            return text;
        }
    }

    internal static string Duration(TimeSpan t) =>
        t.TotalSeconds < 60 ? $"{Math.Ceiling(t.TotalSeconds)} s" : t.TotalMinutes < 90 ? $"{Math.Ceiling(t.TotalMinutes)} min" : $"{t.TotalHours:0.#} h";

    private static string Num(double? d) => d is { } v && double.IsFinite(v) ? v.ToString("0.0000", CultureInfo.InvariantCulture) : "—";

    protected override void OnInitialized() => scope = new TenantScope(Scopes, Tenant, Actor);

    protected override async Task OnParametersSetAsync()
    {
        await ReloadAsync(withCheckpoints: true);
        loaded = true;
    }

    protected override async Task OnAfterRenderAsync(bool firstRender)
    {
        if (!Interactive || job is null || self is not null || disposed) return;
        self = DotNetObjectReference.Create(this);
        try
        {
            module = await Js.InvokeAsync<IJSObjectReference>("import", "./js/job-events.js");
            feed = await module.InvokeAsync<IJSObjectReference>("start", self, FineTuneIds.Job(job.Id), "ft-loss");
        }
        catch (JSDisconnectedException) { }
    }

    /// <summary>Events of this job from the hub, each once, in order of sequence number.</summary>
    [JSInvokable]
    public async Task OnEvents(JobEventMessage[] events)
    {
        if (disposed) return;
        var refresh = false;
        foreach (var e in events)
        {
            eventCount++;
            var (message, level, data) = Read(e.Payload, e.Kind);
            log.Insert(0, new LogLine(e.Seq, e.CreatedAt, e.Kind, level, message));
            if (e.Kind == FineTuneEvent.Metrics && data is { } d) latest = ReadMetrics(d);
            if (e.Kind is "checkpoint" or "succeeded" or "failed" or "cancelled") checkpointsStale = true;
            refresh = true;
        }
        if (log.Count > MaxLog) log.RemoveRange(MaxLog, log.Count - MaxLog);
        StateHasChanged();
        if (refresh) await RefreshAsync();
    }

    [JSInvokable]
    public Task OnConnectionState(string state)
    {
        if (disposed) return Task.CompletedTask;
        connection = state;
        StateHasChanged();
        return Task.CompletedTask;
    }

    /// <summary>Re-reads the job's row after events (one read at a time; events during a read cause one more).</summary>
    private async Task RefreshAsync()
    {
        if (reloading)
        {
            reloadAgain = true;
            return;
        }
        reloading = true;
        try
        {
            do
            {
                reloadAgain = false;
                var withCheckpoints = checkpointsStale;
                checkpointsStale = false;
                await ReloadAsync(withCheckpoints);
                StateHasChanged();
            } while (reloadAgain && !disposed);
        }
        finally
        {
            reloading = false;
        }
    }

    private async Task ReloadAsync(bool withCheckpoints)
    {
        if (!FineTuneIds.TryParseJob(Id, out var id))
        {
            job = null;
            return;
        }
        await dbGate.WaitAsync();
        try
        {
            if (disposed) return;
            // The tenant query filter: another tenant's job is "not found" like one that never existed.
            job = await Db.FineTuneJobs.AsNoTracking().SingleOrDefaultAsync(j => j.Id == id);
            if (job is null) return;
            if (modelName.Length == 0 || job.FineTunedModel is not null) modelName = await Service.ModelNameAsync(job, CancellationToken.None);
            if (withCheckpoints)
                checkpoints = await Db.FineTuneCheckpoints.AsNoTracking().Where(c => c.JobId == id).OrderByDescending(c => c.Step).ToListAsync();
        }
        finally
        {
            dbGate.Release();
        }
    }

    private Task PauseAsync() => ControlAsync((j, ct) => Service.PauseAsync(j, ControlWait, ct));

    private Task ResumeAsync() => ControlAsync((j, ct) => Service.ResumeAsync(j, ControlWait, ct));

    private Task CancelAsync() => ControlAsync((j, ct) => Service.CancelAsync(j, ControlWait, ct));

    private async Task ControlAsync(Func<FineTuneJob, CancellationToken, Task<FineTuneJob>> action)
    {
        if (job is null) return;
        busy = true;
        actionError = null;
        await dbGate.WaitAsync();
        try
        {
            job = await action(job, CancellationToken.None);
            confirmingCancel = false;
        }
        catch (ApiRequestException e)
        {
            actionError = e.Message;
        }
        finally
        {
            dbGate.Release();
            busy = false;
        }
    }

    private static (string Message, string Level, JsonElement? Data) Read(JsonElement payload, string kind)
    {
        if (payload.ValueKind != JsonValueKind.Object) return (kind, "info", null);
        var message = payload.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString()! : kind;
        var level = payload.TryGetProperty("level", out var l) && l.ValueKind == JsonValueKind.String ? l.GetString()! : "info";
        JsonElement? data = payload.TryGetProperty("data", out var d) && d.ValueKind == JsonValueKind.Object ? d : null;
        return (message, level is "info" or "warn" or "error" ? level : "info", data);
    }

    private static Metrics ReadMetrics(JsonElement d)
    {
        double? Dbl(string name) => d.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
        long? Lng(string name) => d.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var x) ? x : null;
        return new Metrics((int)(Lng("step") ?? 0), (int?)Lng("epoch"), Dbl("train_loss"), Dbl("valid_loss"), Dbl("learning_rate"),
            Dbl("tokens_per_second"), Lng("trained_tokens"));
    }

    public async ValueTask DisposeAsync()
    {
        disposed = true;
        try
        {
            if (feed is not null)
            {
                await feed.InvokeVoidAsync("stop");
                await feed.DisposeAsync();
            }
            if (module is not null) await module.DisposeAsync();
        }
        catch (Exception e) when (e is JSDisconnectedException or JSException or TaskCanceledException)
        {
            // The browser is gone or navigated away: its connection closes with it.
        }
        self?.Dispose();
        // A read or a control call in flight finishes before its scope goes.
        await dbGate.WaitAsync();
        if (scope is not null) await scope.DisposeAsync();
        dbGate.Release();
    }
}
