using Loom.Api;
using Loom.Api.Adapters;
using Loom.Api.Errors;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Web.Portal.Identity;
using Loom.Web.Portal.Uploads;
using Microsoft.AspNetCore.Components;
using Microsoft.AspNetCore.Components.Forms;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Pages.Adapters;

/// <summary>Upload (files or one archive, copied over the circuit with progress, then validated by <see cref="AdapterService"/>
/// exactly as POST /v1/adapters does), list, delete with confirmation.</summary>
public sealed partial class Adapters : ComponentBase
{
    private const int MaxFiles = 2;

    [Inject] private AdapterService Service { get; set; } = default!;
    [Inject] private PlatformDbContext Db { get; set; } = default!;
    [Inject] private Loom.Cluster.IInferenceClient Engines { get; set; } = default!;
    [Inject] private TenantContext Tenant { get; set; } = default!;
    [Inject] private PortalUploadGate Gate { get; set; } = default!;
    [Inject] private IOptions<ApiOptions> Options { get; set; } = default!;
    [Inject] private ILogger<Adapters> Logger { get; set; } = default!;

    private List<Adapter>? adapters;
    private List<string> baseModels = [];
    private string name = "";
    private string baseModel = "";
    private IReadOnlyList<IBrowserFile> picked = [];
    private readonly Dictionary<string, string> errors = [];
    private string? generalError;
    private string? uploaded;
    private Guid? confirming;
    private bool busy;
    private long progressDone, progressTotal;

    private bool Interactive => RendererInfo.IsInteractive;
    private string? Error(string field) => errors.GetValueOrDefault(field);

    protected override async Task OnInitializedAsync()
    {
        baseModels = [.. (await Loom.Api.Models.LiveBaseModels.ListAsync(Db, Engines, CancellationToken.None)).Select(m => m.Name)]; // base models an engine serves now
        baseModel = baseModels.FirstOrDefault() ?? "";
        await LoadAsync();
    }

    private async Task LoadAsync() => adapters = await Service.ListAsync(CancellationToken.None);

    internal static string PlaygroundLink(string model) => $"playground?model={Uri.EscapeDataString(model)}";

    private void Pick(InputFileChangeEventArgs e)
    {
        errors.Remove("file");
        uploaded = null;
        progressDone = progressTotal = 0;
        picked = e.FileCount > MaxFiles ? [] : e.GetMultipleFiles(MaxFiles);
        if (e.FileCount > MaxFiles) errors["file"] = "Pick the two PEFT files or one archive, not more.";
    }

    private async Task UploadAsync()
    {
        errors.Clear();
        generalError = null;
        uploaded = null;
        if (name.Trim().Length == 0) errors["name"] = "Give the adapter a name.";
        if (picked.Count == 0) errors["file"] = "Pick the adapter's files or an archive.";
        if (errors.Count > 0) return;
        if (Tenant.TenantId is not { } tenantId)
        {
            // the circuit's tenant comes from the sign-in (TenantCircuitHandler); without one nothing may be stored
            Logger.LogWarning("Adapter upload from the portal refused: the circuit has no tenant");
            generalError = PortalUser.NoTenant;
            return;
        }

        // The API's per-tenant bound on uploads in flight, taken before any byte is copied.
        using var slot = Gate.TryEnter(tenantId, out var refusal);
        if (slot is null)
        {
            errors["file"] = refusal!;
            return;
        }
        busy = true;
        progressDone = 0;
        progressTotal = picked.Sum(f => f.Size);
        try
        {
            using var upload = await BrowserUpload.CopyAsync(picked, Options.Value.MaxUploadBytes, async done =>
            {
                progressDone = done;
                StateHasChanged();
                await Task.Yield();
            }, CancellationToken.None);
            var adapter = await Service.CreateAsync(tenantId, name, baseModel, upload.AsForm(), CancellationToken.None);
            Logger.LogInformation("Adapter {AdapterId} uploaded from the portal for tenant {TenantId}", adapter.Id, tenantId);
            uploaded = adapter.Name;
            name = "";
            picked = [];
            await LoadAsync();
        }
        catch (ApiRequestException e)
        {
            var field = e.Param switch { "name" => "name", "base_model" => "base_model", _ => "file" };
            errors[field] = e.Message;
        }
        catch (UploadTooLargeException e)
        {
            errors["file"] = e.Message;
        }
        catch (IOException e)
        {
            Logger.LogWarning(e, "Adapter upload from the browser failed");
            errors["file"] = "The upload was interrupted; pick the files again.";
        }
        finally
        {
            busy = false;
        }
    }

    private async Task DeleteAsync(Adapter a)
    {
        busy = true;
        generalError = null;
        try
        {
            if (await Service.FindAsync(AdapterIds.Format(a.Id), CancellationToken.None) is { } found)
                await Service.DeleteAsync(found, CancellationToken.None);
            else
                generalError = $"Adapter “{a.Name}” was not found.";
            confirming = null;
            await LoadAsync();
        }
        catch (ApiRequestException e)
        {
            generalError = e.Message;
        }
        finally
        {
            busy = false;
        }
    }

    internal static string Format(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm 'UTC'");
}
