#!/usr/bin/env escript
%% Builds the sidecar without rebar3, for the Python package, and its EEP 48 docs chunks.
%%
%%   escript erlang_sidecar/package.escript app  OutDir   beams and .app in OutDir/ebin,
%%                                                      docs chunks in OutDir/doc/chunks
%%   escript erlang_sidecar/package.escript docs AppDir   docs chunks only, in AppDir/doc/chunks
%%
%% `app` is what setup.py runs when it builds a wheel: the wheel ships OutDir as
%% houseparty/_sidecar, so that `houseparty up` runs from a pip install. `docs` is what
%% scripts/setup.sh runs on rebar3's build (_build/default/lib/houseparty_sidecar).
%% The chunks sit in the application's doc/chunks, where code:get_doc/1 and iex's `h`
%% look for the docs of a module compiled without them.
-mode(compile).

%% The modules whose docs iex and erl users read: the API and its helpers.
-define(DOC_MODULES, ['Elixir.HouseParty', houseparty, hp_time]).

main(["app", Out]) ->
    Src = src_dir(),
    Ebin = filename:join(Out, "ebin"),
    ok = filelib:ensure_path(Ebin),
    Modules = [compile_module(F, Ebin) || F <- lists:sort(filelib:wildcard(filename:join(Src, "*.erl")))],
    write_app(Src, Ebin, Modules),
    docs(Src, Out);
main(["docs", AppDir]) ->
    docs(src_dir(), AppDir);
main(_) ->
    io:format(standard_error, "usage: package.escript app OutDir | docs AppDir~n", []),
    halt(2).

src_dir() ->
    filename:join(filename:dirname(filename:absname(escript:script_name())), "src").

compile_module(File, Ebin) ->
    case compile:file(File, [debug_info, {outdir, Ebin}, return_errors, report_errors]) of
        {ok, Module} -> Module;
        _ -> fail("cannot compile ~s", [File])
    end.

%% The .app is the .app.src with the modules filled in, as rebar3 writes it.
write_app(Src, Ebin, Modules) ->
    [AppSrc] = filelib:wildcard(filename:join(Src, "*.app.src")),
    {ok, [{application, App, Keys}]} = file:consult(AppSrc),
    Term = {application, App, lists:keystore(modules, 1, Keys, {modules, Modules})},
    AppFile = filename:join(Ebin, atom_to_list(App) ++ ".app"),
    ok = file:write_file(AppFile, io_lib:format("~tp.~n", [Term])).

docs(Src, AppDir) ->
    Files = [filename:join(Src, atom_to_list(M) ++ ".erl") || M <- ?DOC_MODULES],
    Dir = filename:join(AppDir, "doc"),
    ok = filelib:ensure_path(filename:join(Dir, "chunks")),
    try edoc:files(Files, [{doclet, edoc_doclet_chunks}, {layout, edoc_layout_chunks},
                           {dir, Dir}, {preprocess, true}]) of
        ok -> ok
    catch
        Class:Reason -> fail("edoc failed: ~p:~p", [Class, Reason])
    end.

fail(Format, Args) ->
    io:format(standard_error, "package.escript: " ++ Format ++ "~n", Args),
    halt(1).
