using Loom.Data.Audit;
using Loom.Data.Tenancy;

namespace Loom.Web.Portal.FineTunes;

/// <summary>
/// A DI scope of a component's own, with the circuit's tenant and actor. The circuit's scoped DbContext is shared by
/// every component of the circuit; a page that reads the database in the background (on job events) uses its own,
/// so a read still in flight when the user moves on cannot collide with the next page's.
/// </summary>
public sealed class TenantScope : IAsyncDisposable
{
    private readonly AsyncServiceScope _scope;

    public TenantScope(IServiceScopeFactory scopes, TenantContext tenant, AuditActor actor)
    {
        _scope = scopes.CreateAsyncScope();
        _scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenant.TenantId;
        _scope.ServiceProvider.GetRequiredService<AuditActor>().Set(actor.Kind, actor.Id, actor.Name, actor.Ip);
    }

    public T Get<T>() where T : notnull => _scope.ServiceProvider.GetRequiredService<T>();

    public ValueTask DisposeAsync() => _scope.DisposeAsync();
}
