using Loom.Data.Entities;
using Microsoft.AspNetCore.Antiforgery;
using Microsoft.AspNetCore.Identity;

namespace Loom.Web.Portal.Identity;

/// <summary>Sign-out is a form post (antiforgery-checked) to a plain endpoint that clears the cookie.</summary>
public static class AccountEndpoints
{
    public static IEndpointRouteBuilder MapAccountEndpoints(this IEndpointRouteBuilder app)
    {
        app.MapPost(PortalModule.SignOutPath, SignOutAsync)
            .WithMetadata(new RequireAntiforgeryTokenAttribute())
            .ExcludeFromDescription();
        return app;
    }

    private static async Task<IResult> SignOutAsync(SignInManager<LoomUser> signIn)
    {
        await signIn.SignOutAsync();
        return TypedResults.LocalRedirect(PortalModule.SignInPath);
    }
}
