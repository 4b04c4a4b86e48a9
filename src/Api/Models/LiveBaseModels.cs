using Loom.Cluster;
using Loom.Data;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Models;

/// <summary>The <c>base_models</c> rows an engine serves now (in this process, or on a live inference node), by name:
/// what /v1/models and the portal's pickers offer. A row stays after the last node serving it is gone.</summary>
public static class LiveBaseModels
{
    public static async Task<List<BaseModel>> ListAsync(PlatformDbContext db, IInferenceClient engines, CancellationToken ct)
    {
        var live = await engines.LiveModelsAsync(ct);
        var rows = await db.BaseModels.AsNoTracking().OrderBy(m => m.Name).ToListAsync(ct);
        return rows.Where(m => live.Contains(m.Name)).ToList();
    }
}
