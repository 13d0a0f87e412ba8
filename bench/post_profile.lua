-- POST /users with SPEC's README example (no response callback, so wrk itself
-- stays cheap enough to measure the stub upstream's ceiling too).
wrk.method = "POST"
wrk.path = "/users"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"userId":"12345","username":"testuser","email":"testuser@example.com","age":30,"address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"},"signupTs":"2023-01-01T12:00:00Z"}]]
