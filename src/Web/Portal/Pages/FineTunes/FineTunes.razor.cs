using Loom.Api.Errors;
using Loom.Api.FineTuning;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Jobs.Events;
using Loom.Web.Realtime;
using Microsoft.AspNetCore.Components;

namespace Loom.Web.Portal.Pages.FineTunes;

/// <summary>The tenant's fine-tuning jobs, newest first (<see cref="FineTuneService"/>, tenant query filter). While the
/// page is open, every job event of the tenant that this node's <see cref="JobEventListener"/> fans out refreshes it.</summary>
public sealed partial class FineTunes : ComponentBase, IAsyncDisposable
{
    internal const int PageSize = 50;
    private static readonly TimeSpan RefreshDelay = TimeSpan.FromMilliseconds(300);

    [Inject] private IServiceScopeFactory Scopes { get; set; } = default!;
    [Inject] private TenantContext Tenant { get; set; } = default!;
    [Inject] private Loom.Data.Audit.AuditActor Actor { get; set; } = default!;
    [Inject] private JobEventListener Listener { get; set; } = default!;
    [Inject] private ILogger<FineTunes> Logger { get; set; } = default!;

    private Loom.Web.Portal.FineTunes.TenantScope? scope;
    private List<FineTuneJob>? jobs;
    private bool more;
    private string? generalError;
    private int refreshPending;
    private bool disposed;

    protected override async Task OnInitializedAsync()
    {
        scope = new Loom.Web.Portal.FineTunes.TenantScope(Scopes, Tenant, Actor);
        await LoadAsync();
        if (RendererInfo.IsInteractive) Listener.Received += OnJobEvent;
    }

    private readonly SemaphoreSlim gate = new(1, 1);

    private async Task LoadAsync()
    {
        await gate.WaitAsync();
        try
        {
            if (disposed) return;
            (jobs, more) = await scope!.Get<FineTuneService>().ListAsync(null, PageSize, CancellationToken.None);
        }
        catch (ApiRequestException e) { generalError = e.Message; }
        finally { gate.Release(); }
    }

    private void OnJobEvent(Guid tenantId, JobEventMessage e)
    {
        if (tenantId != Tenant.TenantId || !e.JobId.StartsWith("ftjob-", StringComparison.Ordinal)) return;
        if (Interlocked.Exchange(ref refreshPending, 1) == 1) return; // a refresh is already on its way
        _ = InvokeAsync(async () =>
        {
            try
            {
                await Task.Delay(RefreshDelay);
                Volatile.Write(ref refreshPending, 0);
                if (disposed) return;
                await LoadAsync();
                StateHasChanged();
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Logger.LogWarning(ex, "Refreshing the fine-tune list failed");
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        disposed = true;
        Listener.Received -= OnJobEvent;
        await gate.WaitAsync(); // a read in flight ends before its scope goes
        if (scope is not null) await scope.DisposeAsync();
        gate.Release();
    }
}
