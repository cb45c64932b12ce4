//! ECR's authorization token: decoding it into a login, and what one region's token covers.

use std::time::Duration;

use base64::Engine as _;

use crate::sensitive::Sensitive;

/// Why an authorization token could not be used. Never carries the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("the authorization token is empty")]
    Empty,
    #[error("the authorization token is not valid base64")]
    NotBase64,
    #[error("the decoded authorization token is not UTF-8 text")]
    NotUtf8,
    #[error("the decoded authorization token has no ':' between user name and password")]
    NoSeparator,
    #[error("the decoded authorization token has an empty user name")]
    EmptyUser,
    #[error("the decoded authorization token has an empty password")]
    EmptyPassword,
    #[error("the decoded authorization token contains control characters")]
    ControlCharacter,
}

/// A decoded registry credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) username: String,
    pub(crate) password: Sensitive<String>,
}

/// Decodes ECR's `authorizationToken`: base64 of `user:password`, split on the first `:` only
/// (the password may itself contain colons).
pub(crate) fn decode_token(token: &str) -> Result<Login, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| TokenError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| TokenError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(TokenError::NoSeparator)?;
    if user.is_empty() {
        return Err(TokenError::EmptyUser);
    }
    if password.is_empty() {
        return Err(TokenError::EmptyPassword);
    }
    if text.chars().any(char::is_control) {
        return Err(TokenError::ControlCharacter);
    }
    Ok(Login {
        username: user.to_string(),
        password: Sensitive::new(password.to_string()),
    })
}

/// ECR tokens last 12 hours: an expiry further out than this (plus some clock skew between ECR
/// and us) was not copied from an ECR answer.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Further out than any ECR token lasts.
pub(crate) fn is_beyond_token_lifetime(expires: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    expires.as_second() - now.as_second() > (MAX_TOKEN_LIFETIME + CLOCK_SKEW).as_secs() as i64
}

/// One region's credential and the registry hosts it is written for.
#[derive(Clone, Debug)]
pub(crate) struct RegionCredential {
    pub(crate) login: Login,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    pub(crate) hosts: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn decodes_and_splits_on_first_colon() {
        let login = decode_token(&STANDARD.encode("AWS:pa:ss:word")).unwrap();
        assert_eq!(login.username, "AWS");
        assert_eq!(login.password.expose(), "pa:ss:word");
    }

    #[test]
    fn rejects_bad_tokens() {
        assert_eq!(decode_token(""), Err(TokenError::Empty));
        assert_eq!(decode_token("not base64!"), Err(TokenError::NotBase64));
        assert_eq!(
            decode_token(&STANDARD.encode([0xff, 0xfe, b':', b'a'])),
            Err(TokenError::NotUtf8)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWSpassword")),
            Err(TokenError::NoSeparator)
        );
        assert_eq!(
            decode_token(&STANDARD.encode(":password")),
            Err(TokenError::EmptyUser)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWS:")),
            Err(TokenError::EmptyPassword)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWS:pa\nss")),
            Err(TokenError::ControlCharacter)
        );
    }

    #[test]
    fn token_errors_never_contain_the_token() {
        let token = STANDARD.encode("AWS");
        let err = decode_token(&token).unwrap_err();
        assert!(!err.to_string().contains(&token));
    }
}
