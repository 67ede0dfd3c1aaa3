export function greet(env, name) {
  const text = `${env.GREETING}, ${name}${env.SETTINGS?.suffix ?? ""}`;
  return env.SETTINGS?.shout ? text.toUpperCase() : text;
}
