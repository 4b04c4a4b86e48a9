using Loom.Api.Limits;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Uploads;

/// <summary>The API's <see cref="UploadGate"/> for portal uploads: one count of uploads in flight per tenant, shared by
/// both, so a tenant cannot get past the bound by uploading through the browser and the API at once.</summary>
public sealed class PortalUploadGate(UploadGate gate, IOptions<UploadOptions> options)
{
    /// <summary>A slot (dispose it when the upload ends), or null with the refusal to show.</summary>
    public IDisposable? TryEnter(Guid tenantId, out string? refusal)
    {
        var slot = gate.TryEnter(tenantId);
        refusal = slot is null
            ? $"Too many uploads in progress for your tenant (at most {options.Value.MaxConcurrentPerTenant} at once). Try again when one finishes."
            : null;
        return slot;
    }
}
