using Loom.Api.Limits;
using System.Security.Claims;
using System.Text.Json.Serialization;
using Loom.Api.Auth;
using Loom.Api.Errors;
using Loom.Api.Models;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Api.Adapters;

public sealed record AdapterObject(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("base_model")] string BaseModel,
    [property: JsonPropertyName("rank")] int Rank,
    [property: JsonPropertyName("alpha")] double Alpha,
    [property: JsonPropertyName("target_modules")] IReadOnlyList<string> TargetModules,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("created_at")] long CreatedAt)
{
    public static AdapterObject From(Adapter a, string baseModel) => new(AdapterIds.Format(a.Id), "adapter", a.Name, baseModel, a.Rank, a.Alpha,
        a.TargetModules.Split(',', StringSplitOptions.RemoveEmptyEntries), a.SizeBytes, a.CreatedAt.ToUnixTimeSeconds());
}

public static class AdapterIds
{
    public static string Format(Guid id) => $"adapter-{id:N}";
    public static bool TryParse(string s, out Guid id)
    {
        id = default;
        return s.StartsWith("adapter-", StringComparison.Ordinal) && Guid.TryParseExact(s["adapter-".Length..], "N", out id);
    }
}

/// <summary>
/// /v1/adapters: upload a PEFT LoRA adapter (validated against its base model before anything is stored),
/// list, get, delete. The adapter's name is the model id a tenant uses in completions.
/// </summary>
public static class AdaptersApi
{
    public static RouteGroupBuilder MapAdapters(this RouteGroupBuilder v1)
    {
        v1.MapPost("/adapters", Upload).WithName("UploadAdapter").DisableAntiforgery().Produces<AdapterObject>(StatusCodes.Status201Created).RequireScope(ApiKeyScopes.Manage);
        v1.MapGet("/adapters", List).WithName("ListAdapters").RequireScope(ApiKeyScopes.Manage);
        v1.MapGet("/adapters/{id}", Get).WithName("GetAdapter").RequireScope(ApiKeyScopes.Manage);
        v1.MapDelete("/adapters/{id}", Delete).WithName("DeleteAdapter").RequireScope(ApiKeyScopes.Manage);
        return v1;
    }

    private static async Task<IResult> Upload(HttpRequest request, ClaimsPrincipal user, AdapterService adapters, UploadGate gate, CancellationToken ct)
    {
        if (!request.HasFormContentType)
            return ApiErrors.BadRequest("Upload the adapter as multipart/form-data: 'name', 'base_model', and the PEFT files or one archive.", "file");
        // Taken before the body is read: reading it is what costs disk.
        using var slot = gate.TryEnter(user.TenantId());
        if (slot is null) return gate.TooMany(request.HttpContext);
        var form = await request.ReadFormAsync(ct);
        try
        {
            var entity = await adapters.CreateAsync(user.TenantId(), form["name"].ToString(), form["base_model"].ToString(), form.Files, ct);
            return Results.Json(AdapterObject.From(entity, entity.BaseModel!.Name), statusCode: StatusCodes.Status201Created);
        }
        catch (ApiRequestException e)
        {
            return e.ToResult();
        }
    }

    private static async Task<IResult> List(AdapterService adapters, CancellationToken ct)
    {
        var rows = await adapters.ListAsync(ct);
        return Results.Json(new ListResponse<AdapterObject>("list", rows.Select(a => AdapterObject.From(a, a.BaseModel!.Name)).ToList()));
    }

    private static async Task<IResult> Get(string id, AdapterService adapters, CancellationToken ct) =>
        await adapters.FindAsync(id, ct) is { } a ? Results.Json(AdapterObject.From(a, a.BaseModel!.Name)) : NotFound(id);

    private static async Task<IResult> Delete(string id, AdapterService adapters, CancellationToken ct)
    {
        if (await adapters.FindAsync(id, ct) is not { } a) return NotFound(id);
        try
        {
            await adapters.DeleteAsync(a, ct);
        }
        catch (ApiRequestException e)
        {
            return e.ToResult();
        }
        return Results.Json(new { id = AdapterIds.Format(a.Id), @object = "adapter.deleted", deleted = true });
    }

    private static IResult NotFound(string id) => ApiErrors.NotFound($"No adapter '{id}'.", "id", "adapter_not_found");
}
