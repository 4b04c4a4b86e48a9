using Loom.Api.Auth;
using Loom.Data.Entities;
using System.Text.Json.Serialization;
using Loom.Api.Errors;
using Loom.Data;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Models;

/// <summary>OpenAI's model object.</summary>
public sealed record ModelObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy);

public sealed record ListResponse<T>(
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("data")] IReadOnlyList<T> Data);

/// <summary>GET /v1/models and /v1/models/{id}: the registered base models an engine serves now (in this process, or on a
/// live inference node) plus the calling tenant's adapters.</summary>
public static class ModelsApi
{
    public const string SystemOwner = "loom";

    public static RouteGroupBuilder MapModels(this RouteGroupBuilder v1)
    {
        v1.MapGet("/models", ListModels).WithName("ListModels").RequireScope(ApiKeyScopes.Inference);
        v1.MapGet("/models/{id}", GetModel).WithName("GetModel").RequireScope(ApiKeyScopes.Inference);
        return v1;
    }

    private static async Task<IResult> ListModels(PlatformDbContext db, Loom.Cluster.IInferenceClient engines, CancellationToken ct)
    {
        var baseModels = (await LiveBaseModels.ListAsync(db, engines, ct)).Select(m => new ModelObject(m.Name, "model", m.CreatedAt.ToUnixTimeSeconds(), SystemOwner));
        // The tenant query filter limits adapters to the caller's own.
        var adapters = await db.Adapters.AsNoTracking().OrderBy(a => a.Name).Select(a => new { a.Name, a.CreatedAt, a.TenantId }).ToListAsync(ct);
        var data = baseModels.Concat(adapters.Select(a => new ModelObject(a.Name, "model", a.CreatedAt.ToUnixTimeSeconds(), Owner(a.TenantId)))).ToList();
        return Results.Json(new ListResponse<ModelObject>("list", data));
    }

    private static async Task<IResult> GetModel(string id, PlatformDbContext db, Loom.Cluster.IInferenceClient engines, CancellationToken ct)
    {
        var baseModel = await db.BaseModels.AsNoTracking().SingleOrDefaultAsync(m => m.Name == id, ct);
        if (baseModel is not null && (await engines.LiveModelsAsync(ct)).Contains(id)) return Results.Json(new ModelObject(baseModel.Name, "model", baseModel.CreatedAt.ToUnixTimeSeconds(), SystemOwner));
        var adapter = await db.Adapters.AsNoTracking().SingleOrDefaultAsync(a => a.Name == id, ct);
        return adapter is null
            ? ApiErrors.ModelNotFound(id)
            : Results.Json(new ModelObject(adapter.Name, "model", adapter.CreatedAt.ToUnixTimeSeconds(), Owner(adapter.TenantId)));
    }

    private static string Owner(Guid tenantId) => $"tenant-{tenantId:N}";
}
