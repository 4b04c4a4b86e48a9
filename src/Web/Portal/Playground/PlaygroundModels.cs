using Loom.Api.Adapters;
using Loom.Data;
using Microsoft.EntityFrameworkCore;

namespace Loom.Web.Portal.Playground;

/// <summary>A model the tenant may chat with: a base model or one of its adapters.</summary>
public sealed record PlaygroundModel(string Name, string Kind, string? BaseModel);

/// <summary>The models of the playground's picker: every base model, then the tenant's adapters (tenant query filter).</summary>
public sealed class PlaygroundModels(PlatformDbContext db, AdapterService adapters)
{
    public async Task<List<PlaygroundModel>> ListAsync(CancellationToken ct)
    {
        var models = await db.BaseModels.AsNoTracking().OrderBy(m => m.Name).Select(m => new PlaygroundModel(m.Name, "base model", null)).ToListAsync(ct);
        models.AddRange((await adapters.ListAsync(ct)).Select(a => new PlaygroundModel(a.Name, "adapter", a.BaseModel!.Name)));
        return models;
    }
}
