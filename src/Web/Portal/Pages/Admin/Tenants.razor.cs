using System.Globalization;
using Loom.Web.Portal.Admin;
using Microsoft.AspNetCore.Components;

namespace Loom.Web.Portal.Pages.Admin;

/// <summary>Administrators create tenants, change their name, share and rate limits, and suspend or resume them.</summary>
public sealed partial class Tenants : ComponentBase
{
    [Inject] private TenantAdministration Service { get; set; } = default!;
    [Inject] private ILogger<Tenants> Logger { get; set; } = default!;

    private sealed class TenantForm
    {
        public string Name { get; set; } = "";
        public string Share { get; set; } = "1";
        public string Rpm { get; set; } = "";
        public string Tpm { get; set; } = "";
    }

    private List<TenantRow>? tenants;
    private TenantForm form = new();
    private Guid? editing, confirming;
    private string? editingName, saved;
    private readonly Dictionary<string, string> errors = [];
    private bool busy;

    private bool Interactive => RendererInfo.IsInteractive;
    private string? Error(string field) => errors.GetValueOrDefault(field);

    protected override Task OnInitializedAsync() => LoadAsync();

    private async Task LoadAsync() => tenants = await Service.ListAsync(CancellationToken.None);

    private void Edit(TenantRow t)
    {
        editing = t.Id;
        editingName = t.Name;
        saved = null;
        errors.Clear();
        form = new TenantForm
        {
            Name = t.Name, Share = t.ShareWeight.ToString(CultureInfo.InvariantCulture),
            Rpm = t.RequestsPerMinute?.ToString(CultureInfo.InvariantCulture) ?? "", Tpm = t.TokensPerMinute?.ToString(CultureInfo.InvariantCulture) ?? "",
        };
    }

    private void StopEditing()
    {
        editing = null;
        form = new();
        errors.Clear();
    }

    private async Task SaveAsync()
    {
        errors.Clear();
        saved = null;
        if (!double.TryParse(form.Share, NumberStyles.Float, CultureInfo.InvariantCulture, out var share)) errors["share"] = "The share must be a number.";
        var rpm = Limit(form.Rpm, "rpm");
        var tpm = Limit(form.Tpm, "tpm");
        if (errors.Count > 0) return;
        busy = true;
        try
        {
            var settings = new TenantSettings(form.Name, share, rpm, tpm);
            if (editing is { } id)
            {
                await Service.UpdateAsync(id, settings, CancellationToken.None);
                saved = $"Tenant “{settings.Name.Trim()}” saved.";
                Logger.LogInformation("Tenant {TenantId} changed by an administrator", id);
            }
            else
            {
                var created = await Service.CreateAsync(settings, CancellationToken.None);
                saved = $"Tenant “{created.Name}” created.";
                Logger.LogInformation("Tenant {TenantId} created by an administrator", created.Id);
            }
            StopEditing();
            await LoadAsync();
        }
        catch (AdminInputException e)
        {
            errors[e.Field] = e.Message;
        }
        finally
        {
            busy = false;
        }
    }

    private int? Limit(string text, string field)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)) return value;
        errors[field] = "Enter a whole number, or leave it empty for the default.";
        return null;
    }

    private async Task SuspendAsync(TenantRow t, bool suspend)
    {
        busy = true;
        try
        {
            await Service.SetSuspendedAsync(t.Id, suspend, CancellationToken.None);
            Logger.LogInformation("Tenant {TenantId} {Action} by an administrator", t.Id, suspend ? "suspended" : "resumed");
            confirming = null;
            await LoadAsync();
        }
        finally
        {
            busy = false;
        }
    }
}
