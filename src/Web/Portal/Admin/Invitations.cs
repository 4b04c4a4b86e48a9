using System.Net.Mail;
using System.Security.Cryptography;
using System.Text;
using Loom.Data;
using Loom.Data.Audit;
using Loom.Data.Entities;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Loom.Web.Portal.Admin;

/// <summary>Bound from "Portal:Invitations".</summary>
public sealed class InvitationOptions
{
    /// <summary>How long an invitation link works.</summary>
    public TimeSpan Lifetime { get; set; } = TimeSpan.FromDays(3);
}

/// <summary>An invitation just made: the invited user (no password yet) and the one-time token of the link.</summary>
public sealed record Invitation(LoomUser User, string Token, DateTimeOffset ExpiresAt);

/// <summary>
/// Invitations by email address: the administrator's invite creates the user without a password (so nobody can sign
/// in as them) and a random one-time token, of which only the SHA-256 and the expiry are stored (as the user's
/// Identity token <c>loom/invitation</c>). Whoever opens the link before it expires sets the password; the token is
/// removed in the same transaction, so a used, replaced or expired link is refused.
/// </summary>
public sealed class Invitations(
    UserManager<LoomUser> users, PlatformDbContext db, AuditLog audit, AuditActor actor, IOptions<InvitationOptions> options, TimeProvider clock)
{
    public const string Provider = "loom";
    public const string TokenName = "invitation";
    public const int MaxEmailLength = 254;

    public async Task<Invitation> InviteAsync(string email, Guid tenantId, bool admin, CancellationToken ct)
    {
        email = email.Trim();
        if (email.Length == 0) throw new AdminInputException("email", "Give the email address to invite.");
        if (email.Length > MaxEmailLength || !MailAddress.TryCreate(email, out var parsed) || parsed.Address != email)
            throw new AdminInputException("email", "That is not an email address.");
        if (await users.FindByNameAsync(email) is not null || await users.FindByEmailAsync(email) is not null)
            throw new AdminInputException("email", $"A user “{email}” already exists.");
        if (!await db.Tenants.AnyAsync(t => t.Id == tenantId, ct)) throw new AdminInputException("tenant", "Pick a tenant.");

        var user = new LoomUser { Id = Guid.NewGuid(), UserName = email, Email = email, TenantId = tenantId };
        var token = WebEncoders.Base64UrlEncode(RandomNumberGenerator.GetBytes(32));
        var expires = clock.GetUtcNow() + options.Value.Lifetime;
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        try
        {
            Check(await users.CreateAsync(user), "email");
            if (admin) Check(await users.AddToRoleAsync(user, LoomIdentity.AdminRole), "role");
            Check(await users.SetAuthenticationTokenAsync(user, Provider, TokenName, Stored(token, expires)), "email");
            audit.Add("user.invited", tenantId, "user", user.Id.ToString(), $"email={email}; admin={admin}; expires={expires:O}");
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        catch
        {
            db.ChangeTracker.Clear();
            throw;
        }
        return new Invitation(user, token, expires);
    }

    /// <summary>The invited user the link names, or why the link is refused.</summary>
    public async Task<(LoomUser? User, string? Refusal)> CheckAsync(Guid userId, string token)
    {
        db.ChangeTracker.Clear();
        var user = await users.FindByIdAsync(userId.ToString());
        if (user is null) return (null, "This invitation link is not valid.");
        var stored = await users.GetAuthenticationTokenAsync(user, Provider, TokenName);
        if (stored is null)
            return (null, user.PasswordHash is null ? "This invitation link is not valid." : "This invitation link was used already. Sign in with your password.");
        var parts = stored.Split(':', 2);
        if (parts.Length != 2 || !long.TryParse(parts[0], out var expiresAt)
            || !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(parts[1]), Encoding.ASCII.GetBytes(Hash(token))))
            return (null, "This invitation link is not valid.");
        if (clock.GetUtcNow().ToUnixTimeSeconds() >= expiresAt)
            return (null, $"This invitation link expired at {DateTimeOffset.FromUnixTimeSeconds(expiresAt).UtcDateTime:yyyy-MM-dd HH:mm} UTC. Ask your administrator for a new one.");
        return (user, null);
    }

    /// <summary>Sets the invited user's password (Identity's rules) and uses up the link, in one transaction.</summary>
    public async Task AcceptAsync(Guid userId, string token, string password, CancellationToken ct)
    {
        var (user, refusal) = await CheckAsync(userId, token);
        if (user is null) throw new AdminInputException("link", refusal!);
        if (password.Length == 0) throw new AdminInputException("password", "Choose a password.");
        foreach (var validator in users.PasswordValidators) Check(await validator.ValidateAsync(users, user, password), "password");
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // Two tabs accepting at once: only the one that removes the token row goes on.
        int removed = await db.Set<IdentityUserToken<Guid>>()
            .Where(t => t.UserId == user.Id && t.LoginProvider == Provider && t.Name == TokenName).ExecuteDeleteAsync(ct);
        if (removed != 1) throw new AdminInputException("link", "This invitation link was used already. Sign in with your password.");
        try
        {
            user.EmailConfirmed = true; // the link reached that address
            Check(await users.AddPasswordAsync(user, password), "password");
            if (actor.Kind == "system") actor.Set("user", user.Id.ToString(), user.UserName, null); // the link's holder is the invited user
            audit.Add("user.invitation_accepted", user.TenantId, "user", user.Id.ToString(), $"name={user.UserName}");
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        catch
        {
            db.ChangeTracker.Clear();
            throw;
        }
    }

    private static string Stored(string token, DateTimeOffset expires) => $"{expires.ToUnixTimeSeconds()}:{Hash(token)}";

    private static string Hash(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    private static void Check(IdentityResult result, string field)
    {
        if (!result.Succeeded) throw new AdminInputException(field, string.Join(" ", result.Errors.Select(e => e.Description)));
    }
}
