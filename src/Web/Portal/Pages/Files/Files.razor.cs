using Loom.Api;
using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Loom.Web.Portal.Identity;
using Loom.Web.Portal.Uploads;
using Microsoft.AspNetCore.Components;
using Microsoft.AspNetCore.Components.Forms;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Pages.Files;

/// <summary>Upload (copied over the circuit with progress, validated line by line, then stored by <see cref="FileService"/>
/// exactly as POST /v1/files does), list, delete with confirmation.</summary>
public sealed partial class Files : ComponentBase
{
    private const int MaxShownLine = 300;

    [Inject] private FileService Service { get; set; } = default!;
    [Inject] private TenantContext Tenant { get; set; } = default!;
    [Inject] private PortalUploadGate Gate { get; set; } = default!;
    [Inject] private IOptions<ApiOptions> Options { get; set; } = default!;

    private List<FileObject>? files;
    private IBrowserFile? picked;
    private string? fieldError, generalError, badLineText;
    private JsonlValidation? validation;
    private Guid? confirming;
    private bool busy;
    private long progressDone, progressTotal;

    private bool Interactive => RendererInfo.IsInteractive;

    protected override Task OnInitializedAsync() => LoadAsync();

    private async Task LoadAsync() => files = await Service.ListAsync(CancellationToken.None);

    private void Pick(InputFileChangeEventArgs e)
    {
        picked = e.File;
        fieldError = null;
        validation = null;
        progressDone = progressTotal = 0;
    }

    private async Task UploadAsync()
    {
        fieldError = generalError = badLineText = null;
        validation = null;
        if (picked is null)
        {
            fieldError = "Pick a JSONL file first.";
            return;
        }
        if (Tenant.TenantId is not { } tenantId)
        {
            generalError = PortalUser.NoTenant;
            return;
        }

        // The API's per-tenant bound on uploads in flight, taken before any byte is copied.
        using var slot = Gate.TryEnter(tenantId, out var refusal);
        if (slot is null)
        {
            fieldError = refusal;
            return;
        }
        busy = true;
        progressDone = 0;
        progressTotal = picked.Size;
        try
        {
            using var upload = await BrowserUpload.CopyAsync([picked], Options.Value.MaxUploadBytes, async done =>
            {
                progressDone = done;
                StateHasChanged();
                await Task.Yield();
            }, CancellationToken.None);
            var form = upload.AsForm();
            await using (var content = form[0].OpenReadStream()) validation = await JsonlValidator.ValidateAsync(content);
            if (!validation.Ok)
            {
                badLineText = await LineAsync(form[0], validation.BadLine!.Value);
                return;
            }
            await Service.UploadAsync(tenantId, FileService.FineTunePurpose, form[0], CancellationToken.None);
            picked = null;
            await LoadAsync();
        }
        catch (ApiRequestException e)
        {
            fieldError = e.Message;
        }
        catch (UploadTooLargeException e)
        {
            fieldError = e.Message;
        }
        catch (IOException)
        {
            fieldError = "The upload was interrupted; pick the file again.";
        }
        finally
        {
            busy = false;
        }
    }

    /// <summary>The text of line <paramref name="number"/> (1-based), shortened for display; null when it cannot be read as text.</summary>
    private static async Task<string?> LineAsync(Microsoft.AspNetCore.Http.IFormFile file, int number)
    {
        try
        {
            using var reader = new StreamReader(file.OpenReadStream());
            for (var i = 1; await reader.ReadLineAsync() is { } line; i++)
                if (i == number) return line.Length > MaxShownLine ? line[..MaxShownLine] + "…" : line;
        }
        catch (IOException) { }
        return null;
    }

    private async Task DeleteAsync(FileObject f)
    {
        busy = true;
        generalError = null;
        try
        {
            if (await Service.FindAsync(FileIds.Format(f.Id), CancellationToken.None) is { } found) await Service.DeleteAsync(found, CancellationToken.None);
            else generalError = $"File “{f.FileName}” was not found.";
            confirming = null;
            await LoadAsync();
        }
        finally
        {
            busy = false;
        }
    }
}
