"""Access tests: links, staff cookies, the sign-in form and secrets, attacked from outside."""
