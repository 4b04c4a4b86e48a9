using Loom.Api.Limits;
using System.Security.Claims;
using System.Text.Json.Serialization;
using Loom.Api.Auth;
using Loom.Api.Errors;
using Loom.Api.Models;
using Loom.Data.Blobs;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

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
    public const string FineTunePurpose = FileService.FineTunePurpose;

    public static RouteGroupBuilder MapFiles(this RouteGroupBuilder v1)
    {
        v1.MapPost("/files", Upload).WithName("UploadFile").DisableAntiforgery().RequireScope(ApiKeyScopes.Manage);
        v1.MapGet("/files", List).WithName("ListFiles").RequireScope(ApiKeyScopes.Manage);
        v1.MapGet("/files/{id}", Get).WithName("GetFile").RequireScope(ApiKeyScopes.Manage);
        v1.MapGet("/files/{id}/content", Content).WithName("GetFileContent").RequireScope(ApiKeyScopes.Manage);
        v1.MapDelete("/files/{id}", Delete).WithName("DeleteFile").RequireScope(ApiKeyScopes.Manage);
        return v1;
    }

    private static async Task<IResult> Upload(HttpRequest request, ClaimsPrincipal user, FileService files, UploadGate gate, CancellationToken ct)
    {
        if (!request.HasFormContentType) return ApiErrors.BadRequest("Upload the file as multipart/form-data with fields 'file' and 'purpose'.", "file");
        // Taken before the body is read: reading it is what costs disk.
        using var slot = gate.TryEnter(user.TenantId());
        if (slot is null) return gate.TooMany(request.HttpContext);
        var form = await request.ReadFormAsync(ct);
        try
        {
            return Results.Json(FileResponse.From(await files.UploadAsync(user.TenantId(), form["purpose"].ToString(), form.Files.GetFile("file"), ct)));
        }
        catch (ApiRequestException e)
        {
            return e.ToResult();
        }
    }

    private static async Task<IResult> List(FileService files, CancellationToken ct) =>
        Results.Json(new ListResponse<FileResponse>("list", (await files.ListAsync(ct)).Select(FileResponse.From).ToList()));

    private static async Task<IResult> Get(string id, FileService files, CancellationToken ct) =>
        await files.FindAsync(id, ct) is { } f ? Results.Json(FileResponse.From(f)) : NotFound(id);

    private static async Task<IResult> Content(string id, FileService files, IBlobStore blobs, CancellationToken ct)
    {
        if (await files.FindAsync(id, ct) is not { } f) return NotFound(id);
        return Results.Stream(blobs.OpenRead(f.BlobSha256), "application/jsonl", f.FileName);
    }

    private static async Task<IResult> Delete(string id, FileService files, CancellationToken ct)
    {
        if (await files.FindAsync(id, ct) is not { } f) return NotFound(id);
        await files.DeleteAsync(f, ct);
        return Results.Json(new { id, @object = "file", deleted = true });
    }

    private static IResult NotFound(string id) => ApiErrors.NotFound($"No such File object: {id}", "id", "file_not_found");
}
