using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Api.FineTuning;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Web.Portal.FineTunes;
using Loom.Web.Portal.Identity;
using Loom.Web.Portal.Playground;
using Microsoft.AspNetCore.Components;

namespace Loom.Web.Portal.Pages.FineTunes;

/// <summary>The "new fine-tune" form: the tenant's models and fine-tune files to pick from, numbers as typed, checked
/// and created by <see cref="FineTuneService"/> after <see cref="FineTuneForm.ToRequest"/> parsed them as the API does.
/// Each refusal is shown next to the field its parameter names.</summary>
public sealed partial class NewFineTune : ComponentBase
{
    [Inject] private FineTuneService Service { get; set; } = default!;
    [Inject] private FileService Files { get; set; } = default!;
    [Inject] private PlaygroundModels Models { get; set; } = default!;
    [Inject] private TenantContext Tenant { get; set; } = default!;
    [Inject] private NavigationManager Navigation { get; set; } = default!;
    [Inject] private ILogger<NewFineTune> Logger { get; set; } = default!;

    /// <summary>Preselects the model to start from (e.g. from an adapter's page).</summary>
    [SupplyParameterFromQuery(Name = "model")] private string? RequestedModel { get; set; }

    private readonly FineTuneForm form = new();
    private List<PlaygroundModel>? models;
    private List<FileObject>? files;
    private readonly Dictionary<string, string> errors = [];
    private string? generalError;
    private bool busy;

    private bool Interactive => RendererInfo.IsInteractive;
    private string? Error(string field) => errors.GetValueOrDefault(field);

    protected override async Task OnInitializedAsync()
    {
        // Checkpoints are served, not continued from: the form offers base models, adapters and fine-tuned models.
        // Both lists are set together: the page renders while the second one loads, and the form needs both.
        var listed = (await Models.ListAsync(CancellationToken.None)).Where(m => m.Kind != PlaygroundModels.CheckpointKind).ToList();
        files = (await Files.ListAsync(CancellationToken.None)).Where(f => f.Purpose == FileService.FineTunePurpose).ToList();
        models = listed;
        SetModel(RequestedModel is { Length: > 0 } r && models.Any(m => m.Name == r) ? r : models.FirstOrDefault()?.Name ?? "");
    }

    private void PickModel(ChangeEventArgs e) => SetModel(e.Value?.ToString() ?? "");

    private void SetModel(string name)
    {
        form.Model = name;
        form.ContinuesAdapter = models?.FirstOrDefault(m => m.Name == name)?.Kind is { } kind && kind != PlaygroundModels.BaseKind;
        errors.Remove(FineTuneForm.Fields.Model);
    }

    private void Toggle(string target, ChangeEventArgs e)
    {
        if (e.Value is true) form.TargetModules.Add(target);
        else form.TargetModules.Remove(target);
    }

    private async Task CreateAsync()
    {
        errors.Clear();
        generalError = null;
        if (form.TrainingFile.Length == 0) errors[FineTuneForm.Fields.Training] = "Pick the training file.";
        if (errors.Count > 0) return;
        if (Tenant.TenantId is not { } tenantId)
        {
            Logger.LogWarning("Fine-tuning job from the portal refused: the circuit has no tenant");
            generalError = PortalUser.NoTenant;
            return;
        }
        busy = true;
        try
        {
            var job = await Service.CreateAsync(tenantId, form.ToRequest(), CancellationToken.None);
            Logger.LogInformation("Fine-tuning job {Job} created from the portal for tenant {TenantId}", FineTuneIds.Job(job.Id), tenantId);
            Navigation.NavigateTo($"fine-tunes/{FineTuneIds.Job(job.Id)}");
        }
        catch (ApiRequestException e)
        {
            if (FineTuneForm.Field(e.Param) is { } field) errors[field] = e.Message;
            else generalError = e.Message;
        }
        finally
        {
            busy = false;
        }
    }
}
