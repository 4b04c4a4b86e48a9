using Microsoft.AspNetCore.Http;

namespace Loom.Api.Errors;

/// <summary>A request refused by a service shared by the API and the portal: the API answers it in OpenAI's envelope,
/// the portal shows <see cref="Exception.Message"/> next to the field that <see cref="Param"/> names.</summary>
public sealed class ApiRequestException(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;

    public IResult ToResult() => ApiErrors.Error(Status, Message, Type, Param, Code);

    public static ApiRequestException BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, message, param, code);
}
