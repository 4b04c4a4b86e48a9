using System.Text.RegularExpressions;
using Loom.Api.Completions;
using Loom.Api.Errors;
using Loom.Api.Files;
using Loom.Api.Limits;
using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Loom.Api.Adapters;

/// <summary>
/// A tenant's adapters, for /v1/adapters and the portal: upload (validated against its base model before anything
/// is stored), list, find, delete. Lookups go through the tenant query filter.
/// </summary>
public sealed partial class AdapterService(
    PlatformDbContext db, IBlobStore blobs, EngineAdapters engine, IOptions<ApiOptions> options, IOptions<UploadOptions> limits, StorageQuota quota, AuditLog audit, TimeProvider clock)
{
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
    private static partial Regex NamePattern();

    /// <summary>Validates and stores an adapter given as the PEFT files or one archive. Throws <see cref="ApiRequestException"/>
    /// (nothing stored) when the name, base model or files are not fit.</summary>
    public async Task<Adapter> CreateAsync(Guid tenantId, string name, string baseName, IFormFileCollection files, CancellationToken ct)
    {
        name = name.Trim();
        baseName = baseName.Trim();
        if (name.Length == 0) throw ApiRequestException.BadRequest("'name' is required.", "name");
        if (!NamePattern().IsMatch(name))
            throw ApiRequestException.BadRequest("'name' must be 1-100 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit.", "name");
        if (baseName.Length == 0) throw ApiRequestException.BadRequest("'base_model' is required.", "base_model");

        var baseModel = await db.BaseModels.AsNoTracking().SingleOrDefaultAsync(m => m.Name == baseName, ct)
                        ?? throw new ApiRequestException(StatusCodes.Status404NotFound, $"The base model '{baseName}' does not exist.", "base_model", "model_not_found");
        if (await db.BaseModels.AnyAsync(m => m.Name == name, ct))
            throw new ApiRequestException(StatusCodes.Status409Conflict, $"'{name}' is the name of a base model; choose another adapter name.", "name", "name_taken");
        if (await db.Adapters.AnyAsync(a => a.Name == name, ct)) throw Exists(name);

        PeftAdapter adapter;
        BlobRef blob;
        try
        {
            using var upload = await AdapterUpload.FromFormAsync(files, limits.Value, ct);
            try
            {
                var config = ModelConfig.Load(baseModel.Path);
                // Fitness is checked on shapes: base_model_name_or_path names the model where the adapter was
                // trained, which rarely matches a platform model name.
                adapter = PeftAdapter.Load(upload.Folder, config, new PeftValidation(options.Value.MaxAdapterRank));
            }
            catch (AdapterFormatException e)
            {
                throw ApiRequestException.BadRequest($"Invalid adapter: {Path.GetFileName(e.File)}: {e.Problem}", "file", "invalid_adapter");
            }
            await quota.EnsureRoomAsync(upload.Bytes, ct);
            blob = await AdapterBlob.StoreAsync(blobs, upload.Folder, ct);
        }
        catch (InvalidRequestException e)
        {
            throw ApiRequestException.BadRequest(e.Message, e.Param, e.Code);
        }

        var entity = new Adapter
        {
            Id = Guid.NewGuid(), TenantId = tenantId, Name = name, BaseModelId = baseModel.Id,
            Rank = adapter.Config.Rank, Alpha = adapter.Config.Alpha,
            TargetModules = string.Join(",", adapter.Config.Targets.Select(LoraTargets.Name)),
            BlobSha256 = blob.Sha256, SizeBytes = blob.Length, CreatedAt = clock.GetUtcNow(),
        };
        db.Adapters.Add(entity);
        audit.Add("adapter.created", tenantId, "adapter", AdapterIds.Format(entity.Id), $"name={name}; bytes={entity.SizeBytes}");
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation })
        {
            // The stored blob, if nothing else refers to it, goes with the blob collection job: content is shared
            // across tenants, and deleting it here could race with another tenant's upload of the same bytes.
            throw Exists(name);
        }
        entity.BaseModel = baseModel;
        return entity;
    }

    /// <summary>The tenant's adapters with their base model, newest first.</summary>
    public Task<List<Adapter>> ListAsync(CancellationToken ct) =>
        db.Adapters.AsNoTracking().Include(a => a.BaseModel).OrderByDescending(a => a.CreatedAt).ToListAsync(ct);

    /// <summary>By id (adapter-…) or by name; the tenant query filter hides other tenants' adapters.</summary>
    public async Task<Adapter?> FindAsync(string id, CancellationToken ct)
    {
        var query = db.Adapters.Include(a => a.BaseModel);
        return AdapterIds.TryParse(id, out var guid)
            ? await query.SingleOrDefaultAsync(a => a.Id == guid, ct)
            : await query.SingleOrDefaultAsync(a => a.Name == id, ct);
    }

    /// <summary>Deletes an adapter found by <see cref="FindAsync"/>; throws <see cref="ApiRequestException"/> (409) while a
    /// request is being served with it.</summary>
    public async Task DeleteAsync(Adapter a, CancellationToken ct)
    {
        if (!engine.TryUnregister(a))
            throw new ApiRequestException(StatusCodes.Status409Conflict, $"The adapter '{a.Name}' is serving a request right now; try again when it finishes.", "id", "adapter_in_use");
        db.Adapters.Remove(a);
        audit.Add("adapter.deleted", a.TenantId, "adapter", AdapterIds.Format(a.Id), $"name={a.Name}");
        // Its blob is removed by the blob collection job once no row of any tenant refers to it.
        await db.SaveChangesAsync(ct);
    }

    private static ApiRequestException Exists(string name) =>
        new(StatusCodes.Status409Conflict, $"You already have an adapter named '{name}'.", "name", "adapter_exists");
}
