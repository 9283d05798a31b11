import { BuiltInOptions, CliConfig, CommandDescriptor, CommandDirective, HelpDoc, Span, Usage } from "@effect/cli"
import { Array as Arr, Console, Effect, Layer, Option } from "effect"

/* Help with the whole command in USAGE, and no colour where nobody sees it. */

/** The command a usage is for: its first name. */
const commandName = (usage: Usage.Usage): string | undefined =>
  usage._tag === "Named" ? usage.names[0] : usage._tag === "Concat" ? commandName(usage.left) : undefined

/** A help page with a COMMANDS section: a group such as `outbox`, which needs a subcommand. */
const isGroup = (doc: HelpDoc.HelpDoc): boolean =>
  HelpDoc.isSequence(doc)
    ? isGroup(doc.left) || isGroup(doc.right)
    : HelpDoc.isHeader(doc) && Span.isText(doc.value) && doc.value.value === "COMMANDS"

/** What @effect/cli would show for `args` if they ask for help (`--help`, `-h`). */
const showHelp = (command: CommandDescriptor.Command<unknown>, name: string, args: ReadonlyArray<string>) =>
  CommandDescriptor.parse(command, [name, ...args], CliConfig.defaultConfig).pipe(
    Effect.option,
    Effect.map(
      Option.flatMap((directive) =>
        CommandDirective.isBuiltIn(directive) && BuiltInOptions.isShowHelp(directive.option)
          ? Option.some(directive.option)
          : Option.none()
      )
    )
  )

/**
 * The help page `args` ask for: `--help`/`-h`, or a group named without a subcommand (`herald
 * outbox`, which @effect/cli answers with its help too). @effect/cli 0.77 gives a nested command's
 * USAGE with its own name only (`$ list …`); this puts the commands before it back
 * (`$ herald outbox list …`) and otherwise renders the page as @effect/cli does. `command` is
 * the root command's descriptor, `root` and `version` the name and version `Command.run` is given.
 */
export const helpPage = (
  command: CommandDescriptor.Command<unknown>,
  root: string,
  version: string,
  args: ReadonlyArray<string>
) =>
  Effect.gen(function*() {
    const names = Arr.takeWhile(args, (arg) => !arg.startsWith("-"))
    const asked = yield* showHelp(command, root, args)
    const help = Option.isSome(asked) || names.length < args.length ? asked : Option.filter(
      yield* showHelp(command, root, [...args, "--help"]),
      (h) => isGroup(h.helpDoc) && commandName(h.usage) === Option.getOrElse(Arr.last(args), () => root)
    )
    return Option.map(help, ({ helpDoc, usage }) => {
      const name = commandName(usage)
      const at = name === undefined ? -1 : names.indexOf(name)
      const parents = name === root ? [] : [root, ...(at === -1 ? [] : names.slice(0, at))]
      const whole = parents.reduceRight(
        (rest, parent) => Usage.concat(Usage.named([parent], Option.none()), rest),
        usage
      )
      const group = isGroup(helpDoc) ? Span.text(" <command>") : Span.empty
      return HelpDoc.toAnsiText(HelpDoc.blocks([
        HelpDoc.h1(Span.code(root)),
        HelpDoc.p(`${root} ${version}`),
        HelpDoc.h1("USAGE"),
        ...Usage.enumerate(whole, CliConfig.defaultConfig).map((line) =>
          HelpDoc.p(Span.spans([Span.text("$ "), line, group]))
        ),
        helpDoc
      ]))
    })
  })

/** Escape sequences: colours, styles, cursor moves and screen clears (CSI), and OSC strings. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const ANSI_ESCAPE = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)/g

/** Colour only on a terminal, and never with NO_COLOR set (https://no-color.org). */
const colour = (stream: NodeJS.WriteStream) => stream.isTTY === true && (process.env.NO_COLOR ?? "") === ""

/**
 * @effect/cli styles help and usage errors with ANSI codes wherever they go: this console drops
 * every escape code from what is written to a stream that is not a terminal (a pipe, a file, a
 * test), so scripts and logs get plain text.
 */
export const PlainOffTerminalLive = Layer.unwrapEffect(Effect.map(Effect.console, (console) => {
  const plain = (args: ReadonlyArray<unknown>) =>
    args.map((a) => typeof a === "string" ? a.replace(ANSI_ESCAPE, "") : a)
  const stdout = colour(process.stdout) ? {} : {
    log: (...args: ReadonlyArray<unknown>) => console.log(...plain(args)),
    info: (...args: ReadonlyArray<unknown>) => console.info(...plain(args)),
    debug: (...args: ReadonlyArray<unknown>) => console.debug(...plain(args))
  }
  const stderr = colour(process.stderr) ? {} : {
    error: (...args: ReadonlyArray<unknown>) => console.error(...plain(args)),
    warn: (...args: ReadonlyArray<unknown>) => console.warn(...plain(args)),
    trace: (...args: ReadonlyArray<unknown>) => console.trace(...plain(args))
  }
  return Console.setConsole({ ...console, ...stdout, ...stderr })
}))
