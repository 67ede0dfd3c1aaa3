import users from "../data/users.json";
import { jsonResponse } from "../util/index.mjs";

export function handleUsers(url) {
  const id = url.pathname.split("/")[2];
  if (!id) return jsonResponse(users.map((u) => u.name));
  const user = users.find((u) => String(u.id) === id);
  return user ? jsonResponse(user) : jsonResponse({ error: "no such user" }, 404);
}
