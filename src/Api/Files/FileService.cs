using Loom.Api.Errors;
using Loom.Api.Limits;
using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Api.Files;

/// <summary>A tenant's files, for /v1/files and the portal: upload (JSONL validated line by line before anything is
/// stored), list, find, delete. Lookups go through the tenant query filter.</summary>
public sealed class FileService(PlatformDbContext db, IBlobStore blobs, IOptions<UploadOptions> limits, StorageQuota quota, AuditLog audit, TimeProvider clock)
{
    public const string FineTunePurpose = "fine-tune";

    /// <summary>Validates and stores an upload; throws <see cref="ApiRequestException"/> (nothing stored) when it is not fit.</summary>
    public async Task<FileObject> UploadAsync(Guid tenantId, string purpose, IFormFile? file, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(purpose)) throw ApiRequestException.BadRequest("'purpose' is required.", "purpose");
        if (purpose != FineTunePurpose) throw ApiRequestException.BadRequest($"'purpose' must be '{FineTunePurpose}'.", "purpose");
        if (file is null) throw ApiRequestException.BadRequest("'file' is required.", "file");
        if (file.Length == 0) throw ApiRequestException.BadRequest("The file is empty.", "file");
        var name = Path.GetFileName(file.FileName);
        if (string.IsNullOrWhiteSpace(name) || name.Length > 500) throw ApiRequestException.BadRequest("The file needs a name of at most 500 characters.", "file");

        // Validate before anything is stored.
        await using (var check = file.OpenReadStream())
        {
            var result = await JsonlValidator.ValidateAsync(check, limits.Value.MaxJsonlLineBytes, ct);
            if (!result.Ok) throw ApiRequestException.BadRequest($"Invalid file format: line {result.BadLine}: {result.Problem}", "file", "invalid_file_format");
        }

        await quota.EnsureRoomAsync(file.Length, ct);
        BlobRef blob;
        await using (var content = file.OpenReadStream()) blob = await blobs.PutAsync(content, ct);
        var entity = new FileObject
        {
            Id = Guid.NewGuid(), TenantId = tenantId, FileName = name, Purpose = purpose,
            Bytes = blob.Length, BlobSha256 = blob.Sha256, CreatedAt = clock.GetUtcNow(),
        };
        db.Files.Add(entity);
        audit.Add("file.created", tenantId, "file", FileIds.Format(entity.Id), $"name={name}; bytes={entity.Bytes}");
        // On failure the stored blob, if nothing else refers to it, goes with the blob collection job.
        await db.SaveChangesAsync(ct);
        return entity;
    }

    /// <summary>The tenant's files, newest first.</summary>
    public Task<List<FileObject>> ListAsync(CancellationToken ct) =>
        db.Files.AsNoTracking().OrderByDescending(f => f.CreatedAt).ToListAsync(ct);

    /// <summary>By id (file-…); null for another tenant's file or none.</summary>
    public async Task<FileObject?> FindAsync(string id, CancellationToken ct) =>
        FileIds.TryParse(id, out var guid) ? await db.Files.SingleOrDefaultAsync(f => f.Id == guid, ct) : null;

    public async Task DeleteAsync(FileObject f, CancellationToken ct)
    {
        db.Files.Remove(f);
        audit.Add("file.deleted", f.TenantId, "file", FileIds.Format(f.Id), $"name={f.FileName}");
        // Its blob is removed by the blob collection job once no row of any tenant refers to it.
        await db.SaveChangesAsync(ct);
    }
}
