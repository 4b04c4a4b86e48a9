using System.Security.Claims;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Loom.Api.Auth;
using Loom.Api.Completions;
using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Api.Models;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

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
public static partial class AdaptersApi
{
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
    private static partial Regex NamePattern();

    public static RouteGroupBuilder MapAdapters(this RouteGroupBuilder v1)
    {
        v1.MapPost("/adapters", Upload).WithName("UploadAdapter").DisableAntiforgery().Produces<AdapterObject>(StatusCodes.Status201Created);
        v1.MapGet("/adapters", List).WithName("ListAdapters");
        v1.MapGet("/adapters/{id}", Get).WithName("GetAdapter");
        v1.MapDelete("/adapters/{id}", Delete).WithName("DeleteAdapter");
        return v1;
    }

    private static async Task<IResult> Upload(HttpRequest request, ClaimsPrincipal user, PlatformDbContext db, IBlobStore blobs,
        IOptions<ApiOptions> options, TimeProvider clock, CancellationToken ct)
    {
        if (!request.HasFormContentType)
            return ApiErrors.BadRequest("Upload the adapter as multipart/form-data: 'name', 'base_model', and the PEFT files or one archive.", "file");
        var form = await request.ReadFormAsync(ct);
        var name = form["name"].ToString().Trim();
        if (name.Length == 0) return ApiErrors.BadRequest("'name' is required.", "name");
        if (!NamePattern().IsMatch(name))
            return ApiErrors.BadRequest("'name' must be 1-100 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit.", "name");
        var baseName = form["base_model"].ToString().Trim();
        if (baseName.Length == 0) return ApiErrors.BadRequest("'base_model' is required.", "base_model");

        var baseModel = await db.BaseModels.AsNoTracking().SingleOrDefaultAsync(m => m.Name == baseName, ct);
        if (baseModel is null) return ApiErrors.NotFound($"The base model '{baseName}' does not exist.", "base_model", "model_not_found");
        if (await db.BaseModels.AnyAsync(m => m.Name == name, ct))
            return ApiErrors.Error(StatusCodes.Status409Conflict, $"'{name}' is the name of a base model; choose another adapter name.", "invalid_request_error", "name", "name_taken");
        if (await db.Adapters.AnyAsync(a => a.Name == name, ct))
            return ApiErrors.Error(StatusCodes.Status409Conflict, $"You already have an adapter named '{name}'.", "invalid_request_error", "name", "adapter_exists");

        PeftAdapter adapter;
        BlobRef blob;
        try
        {
            using var upload = await AdapterUpload.FromFormAsync(form.Files, options.Value.MaxUploadBytes, ct);
            try
            {
                var config = ModelConfig.Load(baseModel.Path);
                // Fitness is checked on shapes: base_model_name_or_path names the model where the adapter was
                // trained, which rarely matches a platform model name.
                adapter = PeftAdapter.Load(upload.Folder, config, new PeftValidation(options.Value.MaxAdapterRank));
            }
            catch (AdapterFormatException e)
            {
                return ApiErrors.Error(StatusCodes.Status400BadRequest, $"Invalid adapter: {Path.GetFileName(e.File)}: {e.Problem}", "invalid_request_error", "file", "invalid_adapter");
            }
            blob = await AdapterBlob.StoreAsync(blobs, upload.Folder, ct);
        }
        catch (InvalidRequestException e)
        {
            return ApiErrors.BadRequest(e.Message, e.Param, e.Code);
        }

        var entity = new Adapter
        {
            Id = Guid.NewGuid(), TenantId = user.TenantId(), Name = name, BaseModelId = baseModel.Id,
            Rank = adapter.Config.Rank, Alpha = adapter.Config.Alpha,
            TargetModules = string.Join(",", adapter.Config.Targets.Select(LoraTargets.Name)),
            BlobSha256 = blob.Sha256, SizeBytes = blob.Length, CreatedAt = clock.GetUtcNow(),
        };
        db.Adapters.Add(entity);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            await BlobReferences.DeleteIfUnreferencedAsync(db, blobs, blob.Sha256, CancellationToken.None);
            return ApiErrors.Error(StatusCodes.Status409Conflict, $"You already have an adapter named '{name}'.", "invalid_request_error", "name", "adapter_exists");
        }
        catch
        {
            await BlobReferences.DeleteIfUnreferencedAsync(db, blobs, blob.Sha256, CancellationToken.None);
            throw;
        }
        return Results.Json(AdapterObject.From(entity, baseModel.Name), statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> List(PlatformDbContext db, CancellationToken ct)
    {
        var rows = await db.Adapters.AsNoTracking().Include(a => a.BaseModel).OrderByDescending(a => a.CreatedAt).ToListAsync(ct);
        return Results.Json(new ListResponse<AdapterObject>("list", rows.Select(a => AdapterObject.From(a, a.BaseModel!.Name)).ToList()));
    }

    private static async Task<IResult> Get(string id, PlatformDbContext db, CancellationToken ct) =>
        await FindAsync(id, db, ct) is { } a ? Results.Json(AdapterObject.From(a, a.BaseModel!.Name)) : NotFound(id);

    private static async Task<IResult> Delete(string id, PlatformDbContext db, IBlobStore blobs, EngineAdapters engine, CancellationToken ct)
    {
        if (await FindAsync(id, db, ct) is not { } a) return NotFound(id);
        if (!engine.TryUnregister(a))
            return ApiErrors.Error(StatusCodes.Status409Conflict, $"The adapter '{a.Name}' is serving a request right now; try again when it finishes.", "invalid_request_error", "id", "adapter_in_use");
        db.Adapters.Remove(a);
        await db.SaveChangesAsync(ct);
        await BlobReferences.DeleteIfUnreferencedAsync(db, blobs, a.BlobSha256, ct);
        return Results.Json(new { id = AdapterIds.Format(a.Id), @object = "adapter.deleted", deleted = true });
    }

    /// <summary>By id (adapter-…) or by name; the tenant query filter hides other tenants' adapters.</summary>
    private static async Task<Adapter?> FindAsync(string id, PlatformDbContext db, CancellationToken ct)
    {
        var query = db.Adapters.Include(a => a.BaseModel);
        return AdapterIds.TryParse(id, out var guid)
            ? await query.SingleOrDefaultAsync(a => a.Id == guid, ct)
            : await query.SingleOrDefaultAsync(a => a.Name == id, ct);
    }

    private static IResult NotFound(string id) => ApiErrors.NotFound($"No adapter '{id}'.", "id", "adapter_not_found");
}
