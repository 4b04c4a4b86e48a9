using Loom.Data.Audit;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Components.Authorization;
using Microsoft.AspNetCore.Components.Server.Circuits;

namespace Loom.Web.Portal.Identity;

/// <summary>
/// Scoped services live per circuit, not per request: set the circuit's <see cref="TenantContext"/> from the
/// authenticated user before its components render, and keep it in step if the authentication state changes.
/// </summary>
public sealed class TenantCircuitHandler(AuthenticationStateProvider auth, TenantContext tenant, AuditActor actor) : CircuitHandler, IDisposable
{
    public override async Task OnCircuitOpenedAsync(Circuit circuit, CancellationToken cancellationToken)
    {
        Apply(await auth.GetAuthenticationStateAsync());
        auth.AuthenticationStateChanged += OnChanged;
    }

    public void Dispose() => auth.AuthenticationStateChanged -= OnChanged;

    private async void OnChanged(Task<AuthenticationState> state)
    {
        try { Apply(await state); }
        catch (Exception) { tenant.TenantId = null; }
    }

    private void Apply(AuthenticationState state)
    {
        tenant.TenantId = PortalUser.TenantOf(state.User);
        if (tenant.TenantId is not null)
            actor.Set("user", state.User.FindFirst(System.Security.Claims.ClaimTypes.NameIdentifier)?.Value, state.User.Identity?.Name, null);
    }
}
