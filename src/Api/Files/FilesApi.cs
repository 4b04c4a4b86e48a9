using System.Security.Claims;
using System.Text.Json.Serialization;
using Loom.Api.Auth;
using Loom.Api.Errors;
using Loom.Api.Models;
using Loom.Data;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Files;

/// <summary>OpenAI's file object.</summary>
public sealed record FileResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("object")] string Object,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("created_at")] long CreatedAt,
    [property: JsonPropertyName("filename")] string FileName,
    [property: JsonPropertyName("purpose")] string Purpose,
    [property: JsonPropertyName("status")] string Status)
{
    public static FileResponse From(FileObject f) =>
        new(FileIds.Format(f.Id), "file", f.Bytes, f.CreatedAt.ToUnixTimeSeconds(), f.FileName, f.Purpose, "processed");
}

public static class FileIds
{
    public static string Format(Guid id) => $"file-{id:N}";
    public static bool TryParse(string s, out Guid id)
    {
        id = default;
        return s.StartsWith("file-", StringComparison.Ordinal) && Guid.TryParseExact(s["file-".Length..], "N", out id);
    }
}

/// <summary>/v1/files: upload (multipart, purpose=fine-tune, JSONL validated line by line), list, get, content, delete.</summary>
public static class FilesApi
{
    public const string FineTunePurpose = "fine-tune";

    public static RouteGroupBuilder MapFiles(this RouteGroupBuilder v1)
    {
        v1.MapPost("/files", Upload).WithName("UploadFile").DisableAntiforgery();
        v1.MapGet("/files", List).WithName("ListFiles");
        v1.MapGet("/files/{id}", Get).WithName("GetFile");
        v1.MapGet("/files/{id}/content", Content).WithName("GetFileContent");
        v1.MapDelete("/files/{id}", Delete).WithName("DeleteFile");
        return v1;
    }

    private static async Task<IResult> Upload(HttpRequest request, ClaimsPrincipal user, PlatformDbContext db, IBlobStore blobs, TimeProvider clock, CancellationToken ct)
    {
        if (!request.HasFormContentType) return ApiErrors.BadRequest("Upload the file as multipart/form-data with fields 'file' and 'purpose'.", "file");
        var form = await request.ReadFormAsync(ct);
        var purpose = form["purpose"].ToString();
        if (string.IsNullOrEmpty(purpose)) return ApiErrors.BadRequest("'purpose' is required.", "purpose");
        if (purpose != FineTunePurpose) return ApiErrors.BadRequest($"'purpose' must be '{FineTunePurpose}'.", "purpose");
        var file = form.Files.GetFile("file");
        if (file is null) return ApiErrors.BadRequest("'file' is required.", "file");
        if (file.Length == 0) return ApiErrors.BadRequest("The file is empty.", "file");
        var name = Path.GetFileName(file.FileName);
        if (string.IsNullOrWhiteSpace(name) || name.Length > 500) return ApiErrors.BadRequest("The file needs a name of at most 500 characters.", "file");

        // Validate before anything is stored.
        await using (var check = file.OpenReadStream())
        {
            var result = await JsonlValidator.ValidateAsync(check, ct);
            if (!result.Ok) return ApiErrors.BadRequest($"Invalid file format: line {result.BadLine}: {result.Problem}", "file", "invalid_file_format");
        }

        BlobRef blob;
        await using (var content = file.OpenReadStream()) blob = await blobs.PutAsync(content, ct);
        var entity = new FileObject
        {
            Id = Guid.NewGuid(), TenantId = user.TenantId(), FileName = name, Purpose = purpose,
            Bytes = blob.Length, BlobSha256 = blob.Sha256, CreatedAt = clock.GetUtcNow(),
        };
        db.Files.Add(entity);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch
        {
            await BlobReferences.DeleteIfUnreferencedAsync(db, blobs, blob.Sha256, CancellationToken.None);
            throw;
        }
        return Results.Json(FileResponse.From(entity));
    }

    private static async Task<IResult> List(PlatformDbContext db, CancellationToken ct)
    {
        var files = await db.Files.AsNoTracking().OrderByDescending(f => f.CreatedAt).ToListAsync(ct);
        return Results.Json(new ListResponse<FileResponse>("list", files.Select(FileResponse.From).ToList()));
    }

    private static async Task<IResult> Get(string id, PlatformDbContext db, CancellationToken ct) =>
        await FindAsync(id, db, ct) is { } f ? Results.Json(FileResponse.From(f)) : NotFound(id);

    private static async Task<IResult> Content(string id, PlatformDbContext db, IBlobStore blobs, CancellationToken ct)
    {
        if (await FindAsync(id, db, ct) is not { } f) return NotFound(id);
        return Results.Stream(blobs.OpenRead(f.BlobSha256), "application/jsonl", f.FileName);
    }

    private static async Task<IResult> Delete(string id, PlatformDbContext db, IBlobStore blobs, CancellationToken ct)
    {
        if (await FindAsync(id, db, ct) is not { } f) return NotFound(id);
        db.Files.Remove(f);
        await db.SaveChangesAsync(ct);
        await BlobReferences.DeleteIfUnreferencedAsync(db, blobs, f.BlobSha256, ct);
        return Results.Json(new { id, @object = "file", deleted = true });
    }

    private static async Task<FileObject?> FindAsync(string id, PlatformDbContext db, CancellationToken ct) =>
        FileIds.TryParse(id, out var guid) ? await db.Files.SingleOrDefaultAsync(f => f.Id == guid, ct) : null;

    private static IResult NotFound(string id) => ApiErrors.NotFound($"No such File object: {id}", "id", "file_not_found");
}
